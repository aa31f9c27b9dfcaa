/**
 * The deployment package, built offline by `npm run package` (scripts/build.mjs, then osls packages
 * dist/): what the CloudFormation template grants, wires and alarms on, and what the zip holds. No AWS credentials
 * and no network: every value below comes from serverless.yml and its params.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { logInvocation } from '../../handler/invocation-log.ts';
import { scheduleMetrics } from '../../handler/schedule.ts';
import { ServiceError } from '../../lib/errors.ts';
import { type CoreEvent, EVENT_LEVEL } from '../../lib/telemetry/events.ts';
import { EventLog } from '../../lib/telemetry/log.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ZIP_NAME = 'wechat-token-service.zip';
const KMS_KEY_ARN = 'arn:aws:kms:ap-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const SECRET_ARN = 'arn:aws:secretsmanager:ap-east-1:210987654321:secret:wechat/credentials-AbCdEf';
const TOPIC_ARN = 'arn:aws:sns:ap-east-1:123456789012:oncall';
const PREFIX_SECRETS_RESOURCE = {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript's
  'Fn::Sub': 'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:wechat/apps/*',
};
const DEFAULT_SECRET_RESOURCE = {
  'Fn::Sub':
    // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript's
    'arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:wechat-token-service/credentials-??????',
};

type Json = Record<string, unknown>;
interface Resource {
  Type: string;
  Properties: Json;
  DependsOn?: string | string[];
  Condition?: string;
}
interface Template {
  Resources: Record<string, Resource>;
  Conditions?: Json;
}
interface Statement {
  Effect: string;
  Action: string | string[];
  Resource: unknown;
  Condition?: Json;
}
interface Package {
  /** The template with its conditions evaluated, as CloudFormation would for these params. */
  template: Template;
  zipBytes: number;
  entries: Map<string, Buffer>;
}

/** `osls package --stage <args…>` with the Node running the tests (the runtime's major). */
function osls(args: string[]) {
  return spawnSync(process.execPath, ['node_modules/osls/bin/serverless.js', 'package', '--stage', ...args], {
    cwd: ROOT,
    env: { ...process.env, CI: 'true' },
    encoding: 'utf8',
    timeout: 100_000,
  });
}

function readPackage(dir: string): Package {
  const raw = JSON.parse(readFileSync(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'));
  const zip = readFileSync(join(dir, ZIP_NAME));
  const template = resolveIntrinsics(raw, raw.Conditions ?? {}) as Template;
  // A resource whose condition is false is not created.
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (
      resource.Condition !== undefined &&
      resolveIntrinsics(raw.Conditions[resource.Condition], raw.Conditions) !== true
    ) {
      delete template.Resources[id];
    }
  }
  return {
    template,
    zipBytes: statSync(join(dir, ZIP_NAME)).size,
    entries: readZip(zip),
  };
}

const NO_VALUE = Symbol('AWS::NoValue');

/**
 * Evaluates the CloudFormation intrinsics this template applies to literal values (`Fn::If`,
 * `Condition`, `Fn::Equals`, `Fn::Not`, `Fn::Select`, `Fn::Split`, `Ref: AWS::NoValue`); leaves the
 * rest (`Fn::Sub`, `Ref` to resources) as written.
 */
function resolveIntrinsics(value: unknown, conditions: Json): unknown {
  const resolve = (v: unknown) => resolveIntrinsics(v, conditions);
  if (Array.isArray(value)) return value.map(resolve).filter((v) => v !== NO_VALUE);
  if (typeof value !== 'object' || value === null) return value;
  const entries = Object.entries(value);
  const [key, arg] = entries.length === 1 ? entries[0]! : [];
  switch (key) {
    case 'Ref':
      if (arg === 'AWS::NoValue') return NO_VALUE;
      break;
    case 'Condition':
      return resolve(conditions[arg as string]);
    case 'Fn::If': {
      const [name, whenTrue, whenFalse] = arg as [string, unknown, unknown];
      return resolve(resolve(conditions[name]) === true ? whenTrue : whenFalse);
    }
    case 'Fn::Equals': {
      const [a, b] = resolve(arg) as [unknown, unknown];
      return a === b;
    }
    case 'Fn::Not':
      return !(resolve(arg) as [boolean])[0];
    case 'Fn::Select': {
      const [index, list] = resolve(arg) as [number, unknown[]];
      return list[index];
    }
    case 'Fn::Split': {
      const [separator, text] = resolve(arg) as [string, unknown];
      if (typeof text === 'string') return text.split(separator);
      break;
    }
  }
  return Object.fromEntries(
    entries.map(([k, v]) => [k, resolve(v)] as const).filter(([, v]) => v !== NO_VALUE),
  );
}

/** Reads a zip's entries through its central directory (no `unzip` binary needed). */
function readZip(zip: Buffer): Map<string, Buffer> {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip: no end of central directory');
  const count = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error(`bad central directory entry ${i}`);
    const method = zip.readUInt16LE(at + 10);
    const compressedSize = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const name = zip.toString('utf8', at + 46, at + 46 + nameLength);
    const dataStart =
      localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
    const data = zip.subarray(dataStart, dataStart + compressedSize);
    files.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at += 46 + nameLength + extraLength + commentLength;
  }
  return files;
}

function ofType(template: Template, type: string): [string, Resource][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === type);
}

function only(template: Template, type: string): Resource {
  const found = ofType(template, type);
  expect(found.map(([id]) => id)).toHaveLength(1);
  return found[0]![1];
}

/** Every statement of every policy the function's role gets: inline, and policies attached to it. */
function roleStatements(template: Template): Statement[] {
  const role = template.Resources.IamRoleLambdaExecution!;
  const inline = (role.Properties.Policies as { PolicyDocument: { Statement: Statement[] } }[]).flatMap(
    (p) => p.PolicyDocument.Statement,
  );
  const attached = [...ofType(template, 'AWS::IAM::RolePolicy'), ...ofType(template, 'AWS::IAM::Policy')]
    .map(([, r]) => r.Properties as { PolicyDocument: { Statement: Statement[] } })
    .flatMap((p) => p.PolicyDocument.Statement);
  return [...inline, ...attached];
}

const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);
const resources = (s: Statement) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
// biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript's
const VIA_SECRETS_MANAGER = { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' };

let dev: Package;
let withKey: Package;
let prodWithoutParams: ReturnType<typeof osls>;
/** One package per cache kind (see serverless.yml's cacheKind and memcachedServers=create). */
const kinds: Record<'nodeTls' | 'serverless' | 'create' | 'prefix', Package> = {} as never;
let unknownKind: ReturnType<typeof osls>;
const SERVERLESS_ENDPOINT = 'wts-abc123.serverless.ape1.cache.amazonaws.com:11211';
const altDir = mkdtempSync(join(tmpdir(), 'wts-package-'));

beforeAll(() => {
  // Sequential: a `--package <dir>` run clears .serverless/, so `npm run package` goes last and leaves
  // its output in place. The osls runs package the dist/ that the global setup built.
  prodWithoutParams = osls(['prod', '--package', join(altDir, 'prod')]);
  const alt = osls([
    'dev',
    '--package',
    join(altDir, 'kms'),
    `--param=secretKmsKeyArn=${KMS_KEY_ARN}`,
    `--param=secretId=${SECRET_ARN}`,
    `--param=alarmTopicArn=${TOPIC_ARN}`,
    '--param=httpApiRateLimit=20',
    '--param=httpApiBurstLimit=40',
    '--param=reservedConcurrency=5',
  ]);
  if (alt.status !== 0) throw new Error(`osls package failed:\n${alt.stdout}\n${alt.stderr}`);
  withKey = readPackage(join(altDir, 'kms'));
  const kindRuns: Array<[keyof typeof kinds, string[]]> = [
    ['nodeTls', ['--param=cacheKind=node-tls']],
    ['prefix', ['--param=secretPrefix=wechat/apps/']],
    ['serverless', ['--param=cacheKind=serverless', `--param=memcachedServers=${SERVERLESS_ENDPOINT}`]],
    [
      'create',
      [
        '--param=cacheKind=serverless',
        '--param=memcachedServers=create',
        '--param=vpcId=vpc-0123456789abcdef0',
        '--param=securityGroupIds=sg-0aaaaaaaaaaaaaaaa,sg-0bbbbbbbbbbbbbbbb',
      ],
    ],
  ];
  for (const [name, params] of kindRuns) {
    const run = osls(['dev', '--package', join(altDir, name), ...params]);
    if (run.status !== 0) throw new Error(`osls package (${name}) failed:\n${run.stdout}\n${run.stderr}`);
    kinds[name] = readPackage(join(altDir, name));
  }
  unknownKind = osls(['dev', '--package', join(altDir, 'unknown'), '--param=cacheKind=redis']);
  const main = spawnSync('npm', ['run', 'package'], {
    cwd: ROOT,
    env: { ...process.env, CI: 'true' },
    encoding: 'utf8',
    timeout: 100_000,
  });
  if (main.status !== 0) throw new Error(`npm run package failed:\n${main.stdout}\n${main.stderr}`);
  dev = readPackage(join(ROOT, '.serverless'));
}, 240_000);

afterAll(() => rmSync(altDir, { recursive: true, force: true }));

describe('npm run package (stage dev, default params)', () => {
  it('deploys dist/index.handler on nodejs22.x, arm64, 256 MB, 10 s', () => {
    const fn = only(dev.template, 'AWS::Lambda::Function').Properties;
    expect(fn).toMatchObject({
      Handler: 'dist/index.handler',
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      MemorySize: 256,
      Timeout: 10,
    });
  });

  it('zips the two bundle files `npm run build` writes, byte for byte, and nothing else of substance', () => {
    // dist/package.json is 47 bytes that mark the bundles as CommonJS whatever surrounds them.
    expect([...dev.entries.keys()].sort()).toEqual([
      'dist/index.js',
      'dist/package.json',
      'dist/wechat-http.js',
    ]);
    expect(JSON.parse(dev.entries.get('dist/package.json')!.toString('utf8'))).toEqual({
      type: 'commonjs',
      main: 'index.js',
    });
    // The global setup and `npm run package` built dist/ from the same sources.
    for (const name of ['dist/index.js', 'dist/wechat-http.js']) {
      expect(sha256(dev.entries.get(name)!), name).toBe(sha256(readFileSync(join(ROOT, name))));
    }
    expect(dev.zipBytes).toBeLessThan(200 * 1024);
  });

  it('keeps undici out of the handler bundle, which imports the HTTP transport from its own file on first use', () => {
    const handler = dev.entries.get('dist/index.js')!.toString('utf8');
    const transport = dev.entries.get('dist/wechat-http.js')!.toString('utf8');
    // Error codes of undici's that this project's code never mentions.
    for (const undiciOnly of ['UND_ERR_BPL_MISSING_UPSTREAM', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']) {
      expect(transport).toContain(undiciOnly);
      expect(handler).not.toContain(undiciOnly);
    }
    expect(handler).toContain('import("./wechat-http.js")');
    // The SDK is the runtime's: referenced, not bundled and not packaged.
    expect(handler).toContain('"@aws-sdk/client-secrets-manager"');
    expect([...dev.entries.keys()].some((name) => name.includes('node_modules'))).toBe(false);
  });

  it('sets the secret id, the cache servers, the schedule interval, the log level and the function timeout; tunables keep their code defaults', () => {
    const fn = only(dev.template, 'AWS::Lambda::Function').Properties;
    expect((fn.Environment as { Variables: Json }).Variables).toEqual({
      WECHAT_SECRET_ID: 'wechat-token-service/credentials',
      MEMCACHED_SERVERS: 'memcached.example.internal:11211',
      // cacheKind=node (the default): a node-based cluster without in-transit encryption.
      MEMCACHED_TLS: 'false',
      MEMCACHED_PROTOCOL: 'binary',
      LOG_LEVEL: 'INFO',
      SCHEDULE_INTERVAL_SECONDS: '300',
      // The function's own timeout, which Lambda does not expose: the configuration checks against it.
      FUNCTION_TIMEOUT_SECONDS: String(fn.Timeout),
    });
    expect(ofType(dev.template, 'AWS::ElastiCache::ServerlessCache')).toEqual([]);
    expect(ofType(dev.template, 'AWS::EC2::SecurityGroup')).toEqual([]);
  });

  it('throttles the HTTP API at 500 requests/s with a burst of 1000, and reserves 50 concurrent executions', () => {
    expect(only(dev.template, 'AWS::ApiGatewayV2::Stage').Properties).toMatchObject({
      StageName: '$default',
      DefaultRouteSettings: {
        DetailedMetricsEnabled: false,
        ThrottlingRateLimit: 500,
        ThrottlingBurstLimit: 1000,
      },
    });
    expect(only(dev.template, 'AWS::Lambda::Function').Properties.ReservedConcurrentExecutions).toBe(50);
  });

  it('runs in the VPC given by the subnet and security group params', () => {
    const fn = only(dev.template, 'AWS::Lambda::Function').Properties;
    expect(fn.VpcConfig).toEqual({
      SubnetIds: ['subnet-00000000000000000'],
      SecurityGroupIds: ['sg-00000000000000000'],
    });
  });

  it('grants secretsmanager:GetSecretValue on the one secret, by name with the 6-character ARN suffix', () => {
    const statements = roleStatements(dev.template);
    const secrets = statements.filter((s) => actions(s).some((a) => a.startsWith('secretsmanager:')));
    expect(secrets).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: DEFAULT_SECRET_RESOURCE },
    ]);
    expect(statements.some((s) => actions(s).some((a) => a.startsWith('kms:')))).toBe(false);
    // The policy is its own resource: the function waits for it, so no invocation runs without it.
    expect(only(dev.template, 'AWS::IAM::RolePolicy').Properties.RoleName).toEqual({
      Ref: 'IamRoleLambdaExecution',
    });
    expect(dev.template.Resources.TokenLambdaFunction!.DependsOn).toContain('SecretAccessPolicy');
  });

  it("grants nothing on '*' but the framework's scoped log statements and the AWS VPC execution policy", () => {
    const statements = roleStatements(dev.template);
    for (const s of statements) {
      expect(s.Effect).toBe('Allow');
      expect(actions(s).filter((a) => a === '*' || a.endsWith(':*'))).toEqual([]);
      expect(resources(s)).not.toContain('*');
    }
    // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholders, not JavaScript's
    const logGroups = 'arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:';
    const role = dev.template.Resources.IamRoleLambdaExecution!.Properties;
    expect((role.Policies as { PolicyDocument: { Statement: Statement[] } }[])[0]!.PolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Action: ['logs:CreateLogStream', 'logs:CreateLogGroup', 'logs:TagResource'],
          Resource: [{ 'Fn::Sub': `${logGroups}/aws/lambda/wechat-token-service-dev*:*` }],
        },
        {
          Effect: 'Allow',
          Action: ['logs:PutLogEvents'],
          Resource: [{ 'Fn::Sub': `${logGroups}/aws/lambda/wechat-token-service-dev*:*:*` }],
        },
      ],
    });
    // Added by the framework because `vpc` is set: ENI management (its ec2 actions are on '*').
    expect(role.ManagedPolicyArns).toEqual([
      {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole',
          ],
        ],
      },
    ]);
    expect(
      Object.values(dev.template.Resources)
        .map((r) => r.Type)
        .filter((t) => t.startsWith('AWS::IAM::'))
        .sort(),
    ).toEqual(['AWS::IAM::Role', 'AWS::IAM::RolePolicy']);
  });

  it('serves GET /token, POST /token/refresh, GET /ticket, POST /jssdk/config and GET and HEAD /healthz over an HTTP API (payload 2.0, no authorizer)', () => {
    const routes = ofType(dev.template, 'AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);
    expect(routes.map((r) => r.RouteKey).sort()).toEqual(
      [
        'GET /healthz',
        'HEAD /healthz',
        'GET /ticket',
        'GET /token',
        'POST /jssdk/config',
        'POST /token/refresh',
      ].sort(),
    );
    for (const route of routes) {
      expect(route.AuthorizerId).toBeUndefined();
      expect(route.AuthorizationType ?? 'NONE').toBe('NONE');
    }
    expect(only(dev.template, 'AWS::ApiGatewayV2::Api').Properties.ProtocolType).toBe('HTTP');
    expect(only(dev.template, 'AWS::ApiGatewayV2::Integration').Properties).toMatchObject({
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
      IntegrationUri: { 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] },
    });
  });

  it('refreshes proactively every 5 minutes with EventBridge’s own scheduled event, never retried', () => {
    const rule = only(dev.template, 'AWS::Events::Rule').Properties;
    expect(rule).toMatchObject({ ScheduleExpression: 'rate(5 minutes)', State: 'ENABLED' });
    const targets = rule.Targets as Json[];
    expect(targets).toHaveLength(1);
    expect(targets[0]!.Arn).toEqual({ 'Fn::GetAtt': ['TokenLambdaFunction', 'Arn'] });
    // No Input: the handler recognises `"detail-type": "Scheduled Event"`.
    expect(targets[0]!.Input).toBeUndefined();
    expect(only(dev.template, 'AWS::Lambda::EventInvokeConfig').Properties.MaximumRetryAttempts).toBe(0);
  });

  it('keeps the function’s logs for 30 days', () => {
    expect(only(dev.template, 'AWS::Logs::LogGroup').Properties).toEqual({
      LogGroupName: '/aws/lambda/wechat-token-service-dev-token',
      RetentionInDays: 30,
    });
  });

  it('alarms on crashes, an invalid configuration, 5xx answers, WeChat errors of any errcode and stale access tokens; no actions without a topic', () => {
    const alarms = Object.fromEntries(
      ofType(dev.template, 'AWS::CloudWatch::Alarm').map(([id, r]) => [id, r.Properties]),
    );
    expect(Object.keys(alarms).sort()).toEqual(
      [
        'ConfigurationInvalidAlarm',
        'FunctionErrorsAlarm',
        'OutsideFetcherAlarm',
        'QuotaWarningAlarm',
        'ScheduleSkippedAlarm',
        'ServerErrorsAlarm',
        'StaleTokenServedAlarm',
        'UpstreamErrorsAlarm',
      ].sort(),
    );
    const anyOccurrence = {
      EvaluationPeriods: 1,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    };
    expect(alarms.FunctionErrorsAlarm).toMatchObject({
      ...anyOccurrence,
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: 'TokenLambdaFunction' } }],
      Statistic: 'Sum',
    });
    expect(alarms.ConfigurationInvalidAlarm).toMatchObject({
      ...anyOccurrence,
      Namespace: 'WeChatTokenService',
      MetricName: 'ConfigurationInvalid',
    });
    // The metric comes from the one JSON line an invalid configuration logs (handler/index.ts).
    const filters = ofType(dev.template, 'AWS::Logs::MetricFilter');
    expect(filters).toHaveLength(1);
    expect(filters[0]?.[1].Properties).toMatchObject({
      LogGroupName: { Ref: 'TokenLogGroup' },
      FilterPattern: '{ $.event = "config.invalid" }',
      MetricTransformations: [
        { MetricNamespace: 'WeChatTokenService', MetricName: 'ConfigurationInvalid', MetricValue: '1' },
      ],
    });
    expect(alarms.ServerErrorsAlarm).toMatchObject({
      ...anyOccurrence,
      Namespace: 'WeChatTokenService',
      MetricName: 'ServerErrors',
      Dimensions: [{ Name: 'service', Value: 'wechat-token-service' }],
    });
    expect(alarms.StaleTokenServedAlarm).toMatchObject({
      ...anyOccurrence,
      Namespace: 'WeChatTokenService',
      MetricName: 'StaleServed',
      Dimensions: [
        { Name: 'service', Value: 'wechat-token-service' },
        { Name: 'kind', Value: 'access_token' },
      ],
    });
    expect(alarms.UpstreamErrorsAlarm).toMatchObject({
      ...anyOccurrence,
      Metrics: [
        {
          Id: 'upstreamErrors',
          ReturnData: true,
          Period: 300,
          Expression:
            'SELECT SUM(UpstreamErrors) FROM SCHEMA("WeChatTokenService", errcode, service, upstream) ' +
            "WHERE service = 'wechat-token-service'",
        },
      ],
    });
    for (const alarm of Object.values(alarms)) {
      expect(alarm.AlarmActions).toBeUndefined();
      expect(alarm.OKActions).toBeUndefined();
    }
  });
});

/**
 * Every metric the code emits, with its dimension names: one event of each kind of the closed
 * vocabulary through the real EventLog, and the invocation lines (served, 5xx, 4xx, a schedule run).
 */
function emittedMetrics(): Map<string, Set<string>> {
  const lines: string[] = [];
  const log = new EventLog({ level: 'DEBUG', write: (line) => lines.push(line), now: () => 0 });
  const appid = 'wx0123456789abcdef';
  const samples: CoreEvent[] = [
    { event: 'upstream.fetch', upstream: 'token', kind: 'access_token', appid, reason: 'schedule' },
    { event: 'upstream.error', upstream: 'token', kind: 'access_token', appid, code: 'x', errcode: 40164 },
    { event: 'upstream.retry', upstream: 'token', reason: '-1', attempt: 1 },
    { event: 'lock.wait', kind: 'access_token', appid, waitedMs: 5, outcome: 'peer' },
    { event: 'token.stale_served', kind: 'access_token', appid, code: 'wechat_unavailable' },
    { event: 'record.invalid', kind: 'access_token', appid },
    { event: 'record.unshared', kind: 'access_token', appid },
    { event: 'record.written_back', kind: 'access_token', appid },
    { event: 'cache.outage', kind: 'access_token', appid, detail: 'x' },
    { event: 'cache.diagnostic', detail: 'x' },
    { event: 'quota.probe', upstream: 'token', breaker: 'token', appid },
    { event: 'quota.breaker_closed', breaker: 'token', appid, by: 'probe' },
    { event: 'quota.cleared', appid },
    { event: 'quota.checked', appid, upstream: 'token', used: 1, limit: 2000, remain: 1999, serviceCount: 1 },
    { event: 'quota.warning', appid, upstream: 'ticket', used: 1600, limit: 2000, detail: 'x' },
    {
      event: 'quota.outside_fetcher',
      appid,
      evidence: 'quota_count',
      wechatCount: 4,
      serviceCount: 1,
      detail: 'x',
    },
    { event: 'config.warning', variable: 'X', value: 1, detail: 'x' },
    { event: 'secrets.stale_served', code: 'secrets_unavailable', ageSeconds: 1, graceLeftSeconds: 1 },
  ];
  // A new event must get a sample here, so its metrics are checked against the dashboard too.
  expect(new Set(samples.map((e) => e.event))).toEqual(new Set(Object.keys(EVENT_LEVEL)));
  for (const event of samples) log.emit(event);
  const served = {
    kind: 'access_token' as const,
    appid,
    value: 'v',
    source: 'cache' as const,
    expiresIn: 1,
    expiresAt: 1,
    generation: 1,
    fetchedAtMs: 0,
  };
  logInvocation(log, 'invoke', 0, { served });
  logInvocation(log, 'http_v2', 0, { error: new ServiceError('wechat_unavailable', 'x') });
  logInvocation(log, 'http_v2', 0, { error: new ServiceError('invalid_request', 'x') });
  logInvocation(log, 'schedule', 0, {
    metrics: scheduleMetrics({ duration_ms: 1, refreshed: [], failed: [], skipped: 0 }),
  });
  const metrics = new Map<string, Set<string>>();
  for (const line of lines) {
    const aws = (
      JSON.parse(line) as {
        _aws?: {
          CloudWatchMetrics: Array<{
            Namespace: string;
            Dimensions: string[][];
            Metrics: Array<{ Name: string }>;
          }>;
        };
      }
    )._aws;
    for (const directive of aws?.CloudWatchMetrics ?? []) {
      expect(directive.Namespace).toBe('WeChatTokenService');
      for (const metric of directive.Metrics) {
        const dims = metrics.get(metric.Name) ?? new Set<string>();
        for (const set of directive.Dimensions) dims.add([...set].sort().join(','));
        metrics.set(metric.Name, dims);
      }
    }
  }
  return metrics;
}

/** The metrics a dashboard body names: `[namespace, name, dim, value, …, {options}?]` and SEARCH expressions. */
function dashboardMetrics(body: string): Array<{ name: string; dimensions: string }> {
  const parsed = JSON.parse(body) as { widgets: Array<{ properties: { metrics: unknown[][] } }> };
  const found: Array<{ name: string; dimensions: string }> = [];
  for (const widget of parsed.widgets) {
    for (const row of widget.properties.metrics) {
      const first = row[0] as unknown;
      if (typeof first === 'object' && first !== null && 'expression' in first) {
        const expression = (first as { expression: string }).expression;
        const match = /SEARCH\('\{WeChatTokenService,([a-z,]+)\} MetricName="(\w+)"'/.exec(expression);
        expect(match, expression).not.toBeNull();
        found.push({ name: match![2]!, dimensions: match![1]!.split(',').sort().join(',') });
        continue;
      }
      expect(first).toBe('WeChatTokenService');
      const pairs = row.slice(2).filter((v) => typeof v === 'string') as string[];
      const names = pairs.filter((_, i) => i % 2 === 0);
      found.push({ name: row[1] as string, dimensions: names.sort().join(',') });
    }
  }
  return found;
}

describe('the dashboard and the alarms of many apps (stage dev)', () => {
  it('has a dashboard of fetches and hits per kind, errors by code, quota remaining, outside fetchers and the schedule’s duration, reading only metrics the code emits with their dimensions', () => {
    const dashboard = only(dev.template, 'AWS::CloudWatch::Dashboard').Properties;
    expect(dashboard.DashboardName).toBe('wechat-token-service-dev');
    const body = (dashboard.DashboardBody as { 'Fn::Sub': string })['Fn::Sub'].replaceAll(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub placeholder, not JavaScript's
      '${AWS::Region}',
      'ap-east-1',
    );
    const read = dashboardMetrics(body);
    const emitted = emittedMetrics();
    for (const { name, dimensions } of read) {
      expect(emitted.has(name), `${name} is emitted by the code`).toBe(true);
      expect([...(emitted.get(name) ?? [])], `${name} with dimensions ${dimensions}`).toContain(dimensions);
    }
    const names = new Set(read.map((m) => m.name));
    for (const name of [
      'Served',
      'UpstreamFetches',
      'UpstreamErrors',
      'ServerErrors',
      'QuotaRemaining',
      'OutsideFetcherSuspected',
      'QuotaWarnings',
      'ScheduleDuration',
      'ScheduleSkipped',
    ]) {
      expect(names.has(name), name).toBe(true);
    }
    console.log(
      `dashboard: ${JSON.parse(body).widgets.length} widgets, ${read.length} metric rows, all emitted by the code`,
    );
  });

  it('alarms a person on a suspected outside fetcher, an app at 80 % of a quota and a schedule that falls behind, on emitted metrics', () => {
    const alarms = Object.fromEntries(
      ofType(dev.template, 'AWS::CloudWatch::Alarm').map(([id, r]) => [id, r.Properties]),
    );
    const emitted = emittedMetrics();
    expect(alarms.OutsideFetcherAlarm).toMatchObject({
      Namespace: 'WeChatTokenService',
      MetricName: 'OutsideFetcherSuspected',
      Dimensions: [{ Name: 'service', Value: 'wechat-token-service' }],
      Statistic: 'Sum',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      TreatMissingData: 'notBreaching',
    });
    expect(alarms.OutsideFetcherAlarm!.AlarmDescription).toContain('token_api "stable"');
    expect(alarms.ScheduleSkippedAlarm).toMatchObject({
      MetricName: 'ScheduleSkipped',
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
    });
    expect(alarms.QuotaWarningAlarm).toMatchObject({
      Metrics: [
        {
          Id: 'quotaWarnings',
          Expression:
            'SELECT SUM(QuotaWarnings) FROM SCHEMA("WeChatTokenService", service, upstream) ' +
            "WHERE service = 'wechat-token-service'",
        },
      ],
    });
    // Every alarm on the service's namespace reads a metric the code emits, with its dimensions
    // (ConfigurationInvalid comes from the Logs metric filter).
    for (const [id, alarm] of Object.entries(alarms)) {
      if (alarm.Namespace === 'AWS/Lambda' || alarm.MetricName === 'ConfigurationInvalid') continue;
      if (alarm.MetricName !== undefined) {
        const dims = (alarm.Dimensions as Array<{ Name: string }>)
          .map((d) => d.Name)
          .sort()
          .join(',');
        expect([...(emitted.get(alarm.MetricName as string) ?? [])], id).toContain(dims);
      } else {
        const expression = (alarm.Metrics as Array<{ Expression: string }>)[0]!.Expression;
        const match = /SELECT SUM\((\w+)\) FROM SCHEMA\("WeChatTokenService", ([a-z, ]+)\)/.exec(expression);
        expect(match, id).not.toBeNull();
        const dims = match![2]!
          .split(',')
          .map((d) => d.trim())
          .sort()
          .join(',');
        expect([...(emitted.get(match![1]!) ?? [])], id).toContain(dims);
      }
    }
  });

  it('with secretPrefix: sets WECHAT_SECRET_PREFIX and grants GetSecretValue on names under the prefix only', () => {
    const fn = only(kinds.prefix.template, 'AWS::Lambda::Function').Properties;
    expect((fn.Environment as { Variables: Json }).Variables.WECHAT_SECRET_PREFIX).toBe('wechat/apps/');
    const secrets = roleStatements(kinds.prefix.template).filter((s) =>
      actions(s).some((a) => a.startsWith('secretsmanager:')),
    );
    expect(secrets).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: DEFAULT_SECRET_RESOURCE },
      {
        Effect: 'Allow',
        Action: 'secretsmanager:GetSecretValue',
        Resource: PREFIX_SECRETS_RESOURCE,
      },
    ]);
    // Without it (the default), no such variable and no such grant.
    const devFn = only(dev.template, 'AWS::Lambda::Function').Properties;
    expect((devFn.Environment as { Variables: Json }).Variables.WECHAT_SECRET_PREFIX).toBeUndefined();
  });
});

describe('osls package with secretKmsKeyArn, a secret ARN, alarmTopicArn, throttling and concurrency params', () => {
  it('throttles and reserves concurrency as the params say', () => {
    const settings = only(withKey.template, 'AWS::ApiGatewayV2::Stage').Properties
      .DefaultRouteSettings as Json;
    // Command-line params arrive as text; CloudFormation reads numeric text as the number.
    expect(Number(settings.ThrottlingRateLimit)).toBe(20);
    expect(Number(settings.ThrottlingBurstLimit)).toBe(40);
    const fn = only(withKey.template, 'AWS::Lambda::Function').Properties;
    expect(Number(fn.ReservedConcurrentExecutions)).toBe(5);
  });

  it('adds exactly one kms:Decrypt statement, on that key, through Secrets Manager only', () => {
    const added = roleStatements(withKey.template).filter(
      (s) => !roleStatements(dev.template).some((d) => JSON.stringify(d) === JSON.stringify(s)),
    );
    expect(added).toEqual([
      { Effect: 'Allow', Action: 'secretsmanager:GetSecretValue', Resource: SECRET_ARN },
      {
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: KMS_KEY_ARN,
        Condition: {
          StringEquals: { 'kms:ViaService': VIA_SECRETS_MANAGER },
        },
      },
    ]);
    // The secret statement replaced the name-based one; nothing else changed.
    expect(roleStatements(withKey.template)).toHaveLength(roleStatements(dev.template).length + 1);
  });

  it('reads the secret by the ARN given', () => {
    const fn = only(withKey.template, 'AWS::Lambda::Function').Properties;
    expect((fn.Environment as { Variables: Json }).Variables.WECHAT_SECRET_ID).toBe(SECRET_ARN);
  });

  it('notifies the topic on alarm and on recovery', () => {
    for (const [, alarm] of ofType(withKey.template, 'AWS::CloudWatch::Alarm')) {
      expect(alarm.Properties.AlarmActions).toEqual([TOPIC_ARN]);
      expect(alarm.Properties.OKActions).toEqual([TOPIC_ARN]);
    }
  });
});

describe('osls package for each cache kind', () => {
  const variables = (p: Package) =>
    (only(p.template, 'AWS::Lambda::Function').Properties.Environment as { Variables: Json }).Variables;

  it('node-tls: TLS with the binary protocol, the endpoint as given', () => {
    expect(variables(kinds.nodeTls)).toMatchObject({
      MEMCACHED_SERVERS: 'memcached.example.internal:11211',
      MEMCACHED_TLS: 'true',
      MEMCACHED_PROTOCOL: 'binary',
    });
  });

  it('serverless: TLS and the text protocol, the endpoint as given, no cache created', () => {
    expect(variables(kinds.serverless)).toMatchObject({
      MEMCACHED_SERVERS: SERVERLESS_ENDPOINT,
      MEMCACHED_TLS: 'true',
      MEMCACHED_PROTOCOL: 'text',
    });
    expect(ofType(kinds.serverless.template, 'AWS::ElastiCache::ServerlessCache')).toEqual([]);
  });

  it('memcachedServers=create: an ElastiCache Serverless Memcached cache in the function’s subnets, used over TLS and the text protocol', () => {
    const cache = only(kinds.create.template, 'AWS::ElastiCache::ServerlessCache');
    expect(cache.Properties).toMatchObject({
      ServerlessCacheName: 'wechat-token-service-dev',
      Engine: 'memcached',
      MajorEngineVersion: '1.6',
      SubnetIds: ['subnet-00000000000000000'],
      SecurityGroupIds: [{ Ref: 'CacheSecurityGroup' }],
      CacheUsageLimits: { DataStorage: { Maximum: 1, Unit: 'GB' }, ECPUPerSecond: { Maximum: 5000 } },
    });
    expect(variables(kinds.create)).toMatchObject({
      MEMCACHED_SERVERS: {
        'Fn::Join': [
          ':',
          [
            { 'Fn::GetAtt': ['ServerlessCache', 'Endpoint.Address'] },
            { 'Fn::GetAtt': ['ServerlessCache', 'Endpoint.Port'] },
          ],
        ],
      },
      MEMCACHED_TLS: 'true',
      MEMCACHED_PROTOCOL: 'text',
    });
  });

  it('memcachedServers=create: the cache’s security group admits the function’s first security group on 11211–11212 only', () => {
    const group = only(kinds.create.template, 'AWS::EC2::SecurityGroup').Properties;
    expect(group.VpcId).toBe('vpc-0123456789abcdef0');
    expect(group.SecurityGroupIngress).toEqual([
      {
        IpProtocol: 'tcp',
        FromPort: 11211,
        ToPort: 11212,
        SourceSecurityGroupId: 'sg-0aaaaaaaaaaaaaaaa',
        Description: 'the token function',
      },
    ]);
    expect(only(kinds.create.template, 'AWS::Lambda::Function').Properties.VpcConfig).toEqual({
      SubnetIds: ['subnet-00000000000000000'],
      SecurityGroupIds: ['sg-0aaaaaaaaaaaaaaaa', 'sg-0bbbbbbbbbbbbbbbb'],
    });
  });

  it('refuses to package an unknown cache kind', () => {
    expect(unknownKind.status).not.toBe(0);
    const output = `${unknownKind.stdout}${unknownKind.stderr}`;
    expect(output).toContain('provider.environment.MEMCACHED_TLS');
    expect(output).toContain('Value not found at "self" source');
  });
});

describe('osls package for another stage', () => {
  it('refuses to package without the cache servers, subnets and security groups (no placeholders)', () => {
    expect(prodWithoutParams.status).not.toBe(0);
    const output = `${prodWithoutParams.stdout}${prodWithoutParams.stderr}`;
    expect(output).toContain('provider.environment.MEMCACHED_SERVERS');
    expect(output).toContain('provider.vpc.subnetIds');
    expect(output).toContain('provider.vpc.securityGroupIds');
  });
});
