// grpc_web_client.js -- drives the npm `grpc-web` runtime (the browser client
// library) from node against Portico, for test_grpc_web.py.
//
// usage: node grpc_web_client.js BASE_URL binary|text
// Prints one JSON line: {"echo": ..., "stream": [sequence...], "error_code": N}.
//
// No generated stubs (protoc-gen-grpc-web is not packaged): the few messages
// used are encoded by hand below; XMLHttpRequest comes from the npm `xhr2`.
'use strict';
global.XMLHttpRequest = require('xhr2');
const grpcWeb = require('grpc-web');

const [base, mode] = process.argv.slice(2);

function varint(n) {
  const out = [];
  while (n > 127) { out.push((n & 127) | 128); n = Math.floor(n / 128); }
  out.push(n);
  return out;
}

function readVarint(b, i) {
  let v = 0, mul = 1;
  for (;;) {
    const x = b[i++];
    v += (x & 127) * mul;
    mul *= 128;
    if (x < 128) return [v, i];
  }
}

// Field `want` of a message: string (wire type 2) or number (wire type 0).
function field(bytes, want) {
  let i = 0;
  while (i < bytes.length) {
    let key; [key, i] = readVarint(bytes, i);
    const num = Math.floor(key / 8), wt = key & 7;
    if (wt === 0) {
      let v; [v, i] = readVarint(bytes, i);
      if (num === want) return v;
    } else if (wt === 2) {
      let len; [len, i] = readVarint(bytes, i);
      if (num === want) return Buffer.from(bytes.slice(i, i + len)).toString('utf8');
      i += len;
    } else if (wt === 1) { i += 8; } else if (wt === 5) { i += 4; } else { throw new Error('wire type ' + wt); }
  }
  return undefined;
}

class Msg {
  constructor(bytes) { this.bytes = bytes; }
  serializeBinary() { return Uint8Array.from(this.bytes); }
  static deserializeBinary(b) { return new Msg(Array.from(b)); }
}

function str(num, s) { const b = Buffer.from(s, 'utf8'); return [num * 8 + 2, ...varint(b.length), ...b]; }
function int(num, v) { return [num * 8, ...varint(v)]; }

const client = new grpcWeb.GrpcWebClientBase({format: mode === 'binary' ? 'binary' : 'text'});
const md = (name, type) => new grpcWeb.MethodDescriptor('/bookstore.v1.Bookstore/' + name, type, Msg, Msg,
                                                          (m) => m.serializeBinary(), Msg.deserializeBinary);
const url = (name) => base + '/bookstore.v1.Bookstore/' + name;
const result = {};

function unary(name, msg) {
  return new Promise((resolve) => {
    client.rpcCall(url(name), msg, {'x-request-id': 'node-1'}, md(name, 'unary'),
                   (err, resp) => resolve([err, resp]));
  });
}

function stream(name, msg) {
  return new Promise((resolve, reject) => {
    const seqs = [];
    const s = client.serverStreaming(url(name), msg, {}, md(name, 'server_streaming'));
    s.on('data', (m) => seqs.push(field(m.bytes, 1)));
    s.on('error', reject);
    s.on('end', () => resolve(seqs));
  });
}

(async () => {
  const [err, resp] = await unary('Echo', new Msg(str(1, 'from node ' + mode)));
  if (err) throw err;
  result.echo = field(resp.bytes, 1);
  result.stream = await stream('WatchBooks', new Msg([...int(1, 1), ...int(2, 10), ...int(3, 3)]));
  const [err2] = await unary('GetShelf', new Msg(int(1, 987654)));
  result.error_code = err2 ? err2.code : 0;
  console.log(JSON.stringify(result));
})().catch((e) => { console.error('failed:', e && (e.stack || e.message || e)); process.exit(1); });
