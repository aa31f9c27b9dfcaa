/** The one line printed when test projects that need memcached cannot run without it. */
export function memcachedMissingLine(projects: readonly string[]): string {
  return `${projects.join(' and ')} tests not run: memcached is not installed (not on PATH, nor in /usr/bin, /usr/local/bin or /opt/homebrew/bin); install it (Debian/Ubuntu: apt-get install memcached; macOS: brew install memcached) or run .ci/run, which installs it`;
}
