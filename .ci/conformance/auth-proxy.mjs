// A loopback reverse proxy for .ci/mcp-conformance.sh: forwards every request unchanged
// (method, path, Host, Origin, every other header, the body; the response streamed back, SSE
// included) to the gateway at AGENT_GATE_UPSTREAM (http://127.0.0.1:<port>) and adds
// `Authorization: Bearer $AGENT_GATE_TOKEN` when the request has none.
//
// Why: the conformance CLI (`conformance server`) has no option to send an Authorization
// header, and /mcp answers 401 without an agent's token. The proxy plays the part of an MCP
// client's configured credentials; the gateway under test is the real one, with its real
// authentication. Prints the port it listens on (127.0.0.1, a free port) on its first line.
import http from 'node:http';

const upstream = new URL(process.env.AGENT_GATE_UPSTREAM);
const token = process.env.AGENT_GATE_TOKEN;
if (!token) {
  console.error('auth-proxy: AGENT_GATE_TOKEN is not set');
  process.exit(2);
}
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  const headers = { ...req.headers };
  if (headers.authorization === undefined) headers.authorization = `Bearer ${token}`;
  const forward = http.request(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent,
    },
    (answer) => {
      res.writeHead(answer.statusCode, answer.statusMessage, answer.rawHeaders);
      answer.pipe(res);
    },
  );
  forward.on('error', (e) => {
    if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
    res.end(`auth-proxy: upstream error: ${e.message}\n`);
  });
  // The client went away (e.g. it cancelled an SSE stream): close the upstream request too.
  res.on('close', () => forward.destroy());
  req.pipe(forward);
});

server.listen(0, '127.0.0.1', () => {
  console.log(server.address().port);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
