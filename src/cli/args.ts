/** `--build-arg K=V` list -> map; a bare `--build-arg NAME` takes the value from the environment, as docker does. */
export function parseBuildArgs(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq < 0) {
      const v = process.env[kv];
      if (v !== undefined) out[kv] = v;
    } else out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
