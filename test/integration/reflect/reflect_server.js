// reflect_server.js -- @grpc/grpc-js servers for test_grpc_reflection.py (and the
// demo, the bench): shop.v1.Shop and shop.v1.Audit from a protoc FileDescriptorSet,
// with server reflection from @grpc/reflection (v1, v1alpha, both or none).
//
//   node reflect_server.js [--tls CERT.pem KEY.pem] SET.pb PORT:MODE[:tls] ...
//
// MODE is both|v1|v1alpha|none; one server per PORT:MODE, all in this process
// (node starts slowly on a loaded machine). Prints "listening PORT" for each.
// Commands on stdin, one per line, each answered on stdout:
//   down PORT          -> the server on PORT stops           ("down PORT")
//   up PORT SET.pb     -> it serves SET.pb there again       ("listening PORT")
//
// @grpc/reflection re-encodes the files with protobufjs, which drops extensions
// it does not know: google.api.http (MethodOptions field 72295728) is declared on
// protobufjs' MethodOptions as raw bytes first, so the annotations reach the
// client byte for byte.
'use strict';
const fs = require('fs');
const path = require('path');
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const reflPath = path.dirname(require.resolve('@grpc/reflection'));
const req = (m) => require(require.resolve(m, { paths: [reflPath] }));
const protobuf = req('protobufjs');
const desc = req('protobufjs/ext/descriptor');
const { ReflectionService } = require('@grpc/reflection');

desc.MethodOptions.add(new protobuf.Field('googleApiHttp', 72295728, 'bytes'));

const args = process.argv.slice(2);
let tls = null;
if (args[0] === '--tls') {
  tls = { cert: fs.readFileSync(args[1]), key: fs.readFileSync(args[2]) };
  args.splice(0, 3);
}
const [setPath, ...specs] = args;
const servers = {}; // port -> { mode, tls, server }

function start(port, mode, useTls, set, done) {
  const setBytes = fs.readFileSync(set);
  const fds = desc.FileDescriptorSet.decode(setBytes);
  const files = fds.file.map((f) => desc.FileDescriptorProto.encode(f).finish());
  // the second version of the test's proto replaces Item.price_cents by a string `price`
  const version = fds.file.some((f) => (f.messageType || []).some((m) => m.name === 'Item' &&
    m.field.some((x) => x.name === 'price'))) ? 'v2' : 'v1';
  const pkg = protoLoader.loadFileDescriptorSetFromBuffer(setBytes, { keepCase: true, longs: String,
    defaults: false });
  const server = new grpc.Server();
  server.addService(pkg['shop.v1.Shop'].service || pkg['shop.v1.Shop'], {
    GetItem: (call, cb) => cb(null, { id: call.request.id,
      name: 'item ' + call.request.id + ' ' + version, price_cents: '1250', price: '12.50',
      tags: ['a', 'b'] }),
    CreateItem: (call, cb) => cb(null, Object.assign({}, call.request.item || {}, { id: 'new' })),
    DeleteItem: (call, cb) => cb(null, { id: call.request.id, name: 'deleted' }),
  });
  if (pkg['shop.v1.Audit']) {
    server.addService(pkg['shop.v1.Audit'].service || pkg['shop.v1.Audit'], {
      Ping: (call, cb) => cb(null, { status: 'ok' }),
    });
  }
  if (mode !== 'none') {
    const refl = new ReflectionService({ shop: { fileDescriptorProtos: files } });
    if (mode === 'both') refl.addToServer(server);
    else if (mode === 'v1') refl.v1.addToServer(server);
    else refl.v1Alpha.addToServer(server);
  }
  const creds = useTls
    ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false)
    : grpc.ServerCredentials.createInsecure();
  server.bindAsync('127.0.0.1:' + port, creds, (err) => {
    if (err) { console.error(err.message); process.exit(1); }
    servers[port] = { mode, tls: useTls, server };
    done();
  });
}

for (const spec of specs) {
  const [port, mode, t] = spec.split(':');
  start(port, mode, t === 'tls', setPath, () => console.log('listening ' + port));
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, port, set] = line.trim().split(/\s+/);
  const s = servers[port];
  if (cmd === 'down' && s) {
    s.server.forceShutdown();
    console.log('down ' + port);
  } else if (cmd === 'up' && s) {
    start(port, s.mode, s.tls, set, () => console.log('listening ' + port));
  }
});
process.on('SIGTERM', () => process.exit(0));
