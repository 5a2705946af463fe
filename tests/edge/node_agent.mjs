// An ngrok agent for the tests: the npm `@ngrok/ngrok` 1.7 SDK, forwarding HTTP endpoints
// to a local service the test runs.
//
// Usage: node node_agent.mjs CONFIG_JSON with `token`, `server_addr`, `ca` (a PEM file),
// `forward` (the local service's URL) and `endpoints`: [{name, domain, traffic_policy?,
// pooling?}]. Prints one JSON line, {"ready": {name: {"url"} or {"error"}}}, then runs until
// its stdin closes. This file imports nothing from Burrow.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const config = JSON.parse(process.argv[2]);
const require = createRequire(config.sdk + "/");
const ngrok = require("@ngrok/ngrok");

const session = await new ngrok.SessionBuilder()
  .authtoken(config.token)
  .serverAddr(config.server_addr)
  .caCert(readFileSync(config.ca))
  .connect();
const ready = {};
for (const endpoint of config.endpoints) {
  let builder = session.httpEndpoint().scheme("HTTP").domain(endpoint.domain);
  if (endpoint.traffic_policy) builder = builder.trafficPolicy(endpoint.traffic_policy);
  if (endpoint.pooling) builder = builder.poolingEnabled(true);
  try {
    const listener = await builder.listenAndForward(config.forward);
    ready[endpoint.name] = { url: listener.url() };
  } catch (error) {
    ready[endpoint.name] = { error: String(error && error.message ? error.message : error) };
  }
}
console.log(JSON.stringify({ ready }));
process.stdin.resume();
process.stdin.on("end", async () => {
  await session.close();
  process.exit(0);
});
