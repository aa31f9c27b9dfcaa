// One "Lambda instance": a separate Node process running the deployable bundle. The parent sends
// one JSON request a line on stdin; answers go to stdout prefixed with "@@wts " (the handler's own
// log lines go to stdout too, unprefixed).
const { handler } = require(process.env.WTS_BUNDLE);
const readline = require('node:readline');

process.on('unhandledRejection', (err) => {
  process.stdout.write(`@@wts ${JSON.stringify({ fatal: `unhandled rejection: ${err?.name}` })}\n`);
  process.exit(70);
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const { id, event, remainingMs, stallMs } = JSON.parse(line);
  // A stall of the event loop, as when the instance gets no CPU: nothing runs meanwhile. The thread
  // blocks without spinning, so it does not take the CPU from memcached and the other instances.
  if (stallMs !== undefined) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, stallMs);
    return;
  }
  const started = Date.now();
  const context = {
    getRemainingTimeInMillis: () => remainingMs - (Date.now() - started),
    awsRequestId: `req-${id}`,
  };
  let result;
  try {
    result = await handler(event, context);
  } catch (err) {
    result = { thrown: String(err?.name) };
  }
  // The handler writes its log lines once the loop turn is done: let them go out before the reply,
  // so a test that has the reply has the lines too.
  await new Promise((resolve) => setImmediate(resolve));
  process.stdout.write(`@@wts ${JSON.stringify({ id, result, ms: Date.now() - started })}\n`);
});
process.stdin.on('end', () => process.exit(0));
