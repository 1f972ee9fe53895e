// Calls the example SOAP service (examples/soap/server.js) with the npm soap
// client, straight, without Portico: proves the example is real SOAP that a
// standard SOAP stack understands. Prints one JSON object with what each call
// returned; test_soap_example.py checks it.
//   node soap_client.js BASE_URL   (NODE_PATH must reach examples/soap/node_modules)
'use strict';
const path = require('path');
const soap = require('soap');

const base = process.argv[2];
const EX = path.join(__dirname, '..', '..', '..', 'examples', 'soap');
const out = {};

// A fault as the client reports it: HTTP status and the parsed Fault element.
async function faultOf(p) {
  try {
    await p;
    return null;
  } catch (e) {
    return { status: e.response && e.response.status, fault: e.root && e.root.Envelope.Body.Fault };
  }
}

// A method of a chosen port (the client's *Async shortcuts use the first one).
const portCall = (fn, args) => new Promise((resolve, reject) =>
  fn(args, (err, result) => (err ? reject(err) : resolve([result]))));

async function main() {
  const wsdl = (f) => path.join(EX, f);
  const calc = await soap.createClientAsync(wsdl('calculator.wsdl'), { endpoint: `${base}/calculator` });
  out.add = (await calc.AddAsync({ a: 40, b: 2 }))[0];
  out.divide = (await calc.DivideAsync({ a: 7, b: 2 }))[0];
  out.stats = (await calc.StatsAsync({ value: [1.5, 2.5, 5] }))[0];
  out.divideByZero = await faultOf(calc.DivideAsync({ a: 7, b: 0 }));
  out.overflow = await faultOf(calc.AddAsync({ a: 2147483647, b: 1 }));

  const calc12 = await soap.createClientAsync(wsdl('calculator.wsdl'),
    { endpoint: `${base}/calculator12`, forceSoap12Headers: true });
  out.add12 = (await portCall(calc12.CalculatorService.CalculatorSoap12.Add, { a: -5, b: 3 }))[0];
  out.divideByZero12 = await faultOf(portCall(calc12.CalculatorService.CalculatorSoap12.Divide, { a: 1, b: 0 }));

  const crm = await soap.createClientAsync(wsdl('crm.wsdl'), { endpoint: `${base}/crm` });
  out.customer1 = (await crm.GetCustomerAsync({ id: 1 }))[0];
  out.customer2 = (await crm.GetCustomerAsync({ id: 2 }))[0];
  out.find = (await crm.FindCustomersAsync({ city: 'Paris', limit: 3 }))[0];
  out.created = (await crm.CreateCustomerAsync({
    name: 'Grace Hopper', status: 'ACTIVE', balance: '10.00',
    address: { street: '1 Navy Yard', city: 'Arlington', country: 'US' },
    phone: [{ attributes: { kind: 'work' }, $value: '+1 555 0100' }], tag: ['cobol', 'navy'],
  }))[0];
  out.notFound = await faultOf(crm.GetCustomerAsync({ id: 7 }));

  const crm12 = await soap.createClientAsync(wsdl('crm.wsdl'), { endpoint: `${base}/crm12`, forceSoap12Headers: true });
  out.backend12 = await faultOf(portCall(crm12.CustomerService.CustomerSoap12.GetCustomer, { id: 500 }));

  const secure = await soap.createClientAsync(wsdl('crm.wsdl'), { endpoint: `${base}/crm-secure` });
  out.secureWithout = await faultOf(secure.GetCustomerAsync({ id: 1 }));
  secure.setSecurity(new soap.WSSecurity('portico', 's3cret-token', { passwordType: 'PasswordText', hasTimeStamp: false, hasNonce: false }));
  out.secureWith = (await secure.GetCustomerAsync({ id: 1 }))[0];
  process.stdout.write(JSON.stringify(out) + '\n');
}
main().catch((e) => {
  process.stderr.write(`soap_client: ${e.stack || e}\n`);
  process.exit(1);
});
