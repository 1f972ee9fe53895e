// reflect_server.js -- a @grpc/grpc-js server for test_grpc_reflection.py:
// serves shop.v1.Shop and shop.v1.Audit from a protoc FileDescriptorSet, with
// server reflection from @grpc/reflection (v1, v1alpha, both or none).
//
//   node reflect_server.js SET.pb PORT both|v1|v1alpha|none [CERT.pem KEY.pem]
//
// Prints "listening PORT" once bound. @grpc/reflection re-encodes the files
// with protobufjs, which drops extensions it does not know: google.api.http
// (MethodOptions field 72295728) is declared on protobufjs' MethodOptions as
// raw bytes first, so the annotations reach the client byte for byte.
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const reflPath = path.dirname(require.resolve('@grpc/reflection'));
const req = (m) => require(require.resolve(m, { paths: [reflPath] }));
const protobuf = req('protobufjs');
const desc = req('protobufjs/ext/descriptor');
const { ReflectionService } = require('@grpc/reflection');

const [setPath, portArg, mode, certPath, keyPath] = process.argv.slice(2);
desc.MethodOptions.add(new protobuf.Field('googleApiHttp', 72295728, 'bytes'));
const setBytes = fs.readFileSync(setPath);
const set = desc.FileDescriptorSet.decode(setBytes);
const files = set.file.map((f) => desc.FileDescriptorProto.encode(f).finish());

const pkg = protoLoader.loadFileDescriptorSetFromBuffer(setBytes, { keepCase: true, longs: String, defaults: false });
const server = new grpc.Server();
// the second version of the test's proto renames Item.price_cents to a string `price`
const version = set.file.some((f) => (f.messageType || []).some((m) => m.name === 'Item' &&
  m.field.some((x) => x.name === 'price'))) ? 'v2' : 'v1';
server.addService(pkg['shop.v1.Shop'].service || pkg['shop.v1.Shop'], {
  GetItem: (call, cb) => cb(null, { id: call.request.id, name: 'item ' + call.request.id + ' ' + version,
    price_cents: '1250', price: '12.50', tags: ['a', 'b'] }),
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
const creds = certPath ? grpc.ServerCredentials.createSsl(null, [{
  cert_chain: fs.readFileSync(certPath), private_key: fs.readFileSync(keyPath) }], false)
  : grpc.ServerCredentials.createInsecure();
server.bindAsync('127.0.0.1:' + portArg, creds, (err, port) => {
  if (err) { console.error(err.message); process.exit(1); }
  console.log('listening ' + port);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
