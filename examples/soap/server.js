#!/usr/bin/env node
// The example SOAP services for Portico's demo, tests and benchmark, served by
// the npm `soap` package from calculator.wsdl and crm.wsdl.
//
//   node server.js [--port N] [--host 127.0.0.1]
//
// Prints "listening PORT" on stdout once every endpoint is ready. Endpoints:
//   /calculator   Calculator, SOAP 1.1      /calculator12   the same, SOAP 1.2
//   /crm          CustomerService, SOAP 1.1 /crm12          the same, SOAP 1.2
//   /crm-secure   CustomerService, SOAP 1.1, requires a WS-Security
//                 UsernameToken (user "portico", PasswordText "s3cret-token")
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const soap = require('soap');

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const PORT = parseInt(opt('--port', '0'), 10);
const HOST = opt('--host', '127.0.0.1');
const SECURE_USER = 'portico';
const SECURE_PASSWORD = 's3cret-token';

const INT_MIN = -2147483648;
const INT_MAX = 2147483647;

// Keep xsd:long, xsd:decimal and dates as the text that was sent: JavaScript
// numbers would lose digits past 2^53 and decimals' trailing zeros.
const asText = (text) => text;
const deserializers = { long: asText, decimal: asText, date: asText, dateTime: asText };

// ---- faults, in the shape of the SOAP version the endpoint speaks ----------
// SOAP 1.1: faultcode/faultstring/detail, HTTP 500 for every fault (SOAP 1.1
// section 6.2). SOAP 1.2: Code/Reason/Detail, HTTP 400 for Sender faults and
// 500 for Receiver faults (SOAP 1.2 part 2, 7.5.1.2).
function fault(v12, sender, message, detail) {
  if (!v12) {
    return { Fault: { faultcode: sender ? 'soap:Client' : 'soap:Server', faultstring: message,
                      detail: detail, statusCode: 500 } };
  }
  return { Fault: { Code: { Value: sender ? 'soap:Sender' : 'soap:Receiver' },
                    Reason: { Text: { attributes: { 'xml:lang': 'en' }, $value: message } },
                    Detail: detail, statusCode: sender ? 400 : 500 } };
}
// A fault detail element in its schema's namespace, written as XML (the soap
// package would put the children of a SOAP 1.2 Detail in the envelope's
// namespace). Values are numbers, booleans or plain words here: no escaping.
const detailOf = (ns, name, body) => ({
  $xml: `<${name} xmlns="${ns}">` + Object.entries(body).map(([k, v]) => `<${k}>${v}</${k}>`).join('') + `</${name}>`,
});
const CALC_NS = 'http://example.com/calculator';
const CRM_NS = 'http://example.com/crm';
const XSI_NS = 'http://www.w3.org/2001/XMLSchema-instance';

// ---- the calculator ---------------------------------------------------------
function calculator(v12) {
  const toInt = (v) => (typeof v === 'number' ? v : parseInt(v, 10));
  const checked = (op, r) => {
    if (r < INT_MIN || r > INT_MAX) {
      throw fault(v12, false, `${op}: the result does not fit in xsd:int`,
                  detailOf(CALC_NS, 'OverflowFault', { operation: op }));
    }
    return r;
  };
  return {
    Add: (a) => ({ result: checked('Add', toInt(a.a) + toInt(a.b)) }),
    Subtract: (a) => ({ result: checked('Subtract', toInt(a.a) - toInt(a.b)) }),
    Divide: (a) => {
      const x = toInt(a.a), y = toInt(a.b);
      if (y === 0) {
        throw fault(v12, true, 'division by zero', detailOf(CALC_NS, 'DivideByZeroFault', { dividend: x }));
      }
      const q = Math.trunc(x / y);
      return { quotient: checked('Divide', q), remainder: x - q * y };
    },
    Stats: (a) => {
      let v = a && a.value !== undefined ? a.value : [];
      if (!Array.isArray(v)) v = [v];
      v = v.map(Number);
      const sum = v.reduce((s, x) => s + x, 0);
      const r = { count: v.length, sum: sum, mean: v.length ? sum / v.length : null };
      if (v.length) {
        r.min = Math.min(...v);
        r.max = Math.max(...v);
      }
      return r;
    },
  };
}

// ---- the customer store -----------------------------------------------------
// Fixed customers for the mapping tests (each one shows other edge cases), and
// generated ones for FindCustomers (the benchmark's larger answer).
const customers = new Map();
function put(c) { customers.set(String(c.id), c); return c; }
put({ id: '1', version: 3, name: 'Ada Lovelace', middleName: 'King', email: 'ada@example.com',
      status: 'ACTIVE', balance: '1234.50', creditLimit: 5000.25, vip: true, visits: 65535,
      since: '1835-07-08', updated: '2026-12-01T10:30:00Z',
      address: { street: '12 St James Square', city: 'London', postalCode: 'SW1Y 4JH', country: 'GB' },
      phone: [{ kind: 'home', number: '+44 20 7946 0001' }, { kind: 'mobile', number: '+44 7700 900001' }],
      tag: ['math', 'poetry'], photo: 'iVBORw0KGgo=' });
// minimal: nil middle name, no email, no credit limit, ONE phone and ONE tag
put({ id: '2', version: 1, name: 'Charles Babbage', middleName: null, status: 'SUSPENDED',
      balance: '-0.01', vip: false, visits: 0, since: '1820-01-01', updated: '2026-11-30T23:59:59.123+01:00',
      address: { street: '1 Dorset Street', city: 'London', country: 'GB' },
      phone: [{ kind: 'work', number: '+44 20 7946 0002' }], tag: ['engines'] });
// an id past 2^53 and a decimal with more digits than a double keeps
put({ id: '9007199254740993', name: 'Big Number', middleName: null, status: 'CLOSED',
      balance: '12345678901234567890.123456789', vip: false, visits: 1, since: '2000-02-29',
      updated: '2000-02-29T00:00:00Z', address: { street: 'Zero Lane 0', city: 'Zurich', country: 'CH' },
      tag: [] });
const CITIES = ['London', 'Paris', 'Zurich', 'Berlin'];
const STATUSES = ['ACTIVE', 'SUSPENDED', 'CLOSED'];
for (let i = 0; i < 200; i++) {
  const id = 1000 + i;
  put({ id: String(id), version: 1, name: `Customer ${id}`, middleName: i % 3 ? null : 'M',
        email: i % 2 ? undefined : `c${id}@example.com`, status: STATUSES[i % 3],
        balance: `${i * 7}.${String(i % 100).padStart(2, '0')}`, vip: i % 5 === 0, visits: i,
        since: '2020-01-01', updated: '2026-01-01T00:00:00Z',
        address: { street: `${i} Main Street`, city: CITIES[i % 4], postalCode: `${10000 + i}`, country: 'XX' },
        phone: [{ kind: 'work', number: `+1 555 ${String(i).padStart(4, '0')}` }], tag: ['generated'] });
}
let nextId = 5000;

// The answer element for a customer, children in the schema's sequence order.
function render(c) {
  const r = { attributes: { version: c.version || 1 }, id: c.id, name: c.name, middleName: c.middleName };
  if (c.email !== undefined) r.email = c.email;
  r.status = c.status;
  r.balance = c.balance;
  if (c.creditLimit !== undefined) r.creditLimit = c.creditLimit;
  r.vip = c.vip;
  r.visits = c.visits;
  r.since = c.since;
  r.updated = c.updated;
  const a = c.address;
  r.address = { street: a.street, city: a.city };
  if (a.postalCode !== undefined) r.address.postalCode = a.postalCode;
  r.address.country = a.country;
  if (c.phone && c.phone.length) r.phone = c.phone.map((p) => ({ attributes: { kind: p.kind }, $value: p.number }));
  if (c.tag && c.tag.length) r.tag = c.tag;
  if (c.photo !== undefined) r.photo = c.photo;
  return r;
}
const list = (v) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
const textOf = (v) => (v !== null && typeof v === 'object' ? v.$value : v);

function crm(v12) {
  const find = (id) => {
    if (String(id) === '500') {
      throw fault(v12, false, 'the customer database is unavailable',
                  detailOf(CRM_NS, 'BackendFailure', { system: 'crm-db', retryable: true }));
    }
    const c = customers.get(String(id));
    if (!c) {
      throw fault(v12, true, `no customer with id ${id}`, detailOf(CRM_NS, 'CustomerNotFound', { id: String(id) }));
    }
    return c;
  };
  return {
    GetCustomer: (a) => ({ customer: render(find(a.id)) }),
    FindCustomers: (a) => {
      a = a || {};
      const limit = a.limit !== undefined ? parseInt(a.limit, 10) : 10;
      const hits = [...customers.values()].filter(
        (c) => (a.city === undefined || c.address.city === a.city) && (a.status === undefined || c.status === a.status));
      const r = {};
      const shown = hits.slice(0, Math.max(0, limit)).map(render);
      if (shown.length) r.customer = shown;
      r.total = hits.length;
      return r;
    },
    CreateCustomer: (a) => {
      const addr = a.address || {};
      const c = put({ id: String(nextId++), version: 1, name: a.name,
                      middleName: a.middleName === undefined || (a.middleName && a.middleName.attributes) ? null : a.middleName,
                      email: a.email, status: a.status, balance: a.balance,
                      vip: a.vip === undefined ? false : a.vip, visits: 0, since: '2026-12-07',
                      updated: '2026-12-07T00:00:00Z',
                      address: { street: addr.street, city: addr.city, postalCode: addr.postalCode, country: addr.country },
                      phone: list(a.phone).map((p) => ({ kind: p.attributes ? p.attributes.kind : 'home', number: textOf(p) })),
                      tag: list(a.tag) });
      return { customer: render(c) };
    },
    UpdateCustomer: (a) => {
      const c = find(a.id);
      if (a.email !== undefined) c.email = a.email;
      if (a.status !== undefined) c.status = a.status;
      c.version = (c.version || 1) + 1;
      return { customer: render(c) };
    },
    DeleteCustomer: (a) => {
      find(a.id);
      customers.delete(String(a.id));
      return { deleted: true };
    },
  };
}

// ---- the endpoints -----------------------------------------------------------
const server = http.createServer((req, res) => {
  res.statusCode = 404;
  res.end('not a SOAP endpoint\n');
});
server.keepAliveTimeout = 60000;

function endpoint(file, urlPath, services, v12, authenticate) {
  const xml = fs.readFileSync(path.join(__dirname, file), 'utf8');
  return new Promise((resolve) => {
    const s = soap.listen(server, { path: urlPath, services, xml, forceSoap12Headers: v12,
                                    customDeserializer: deserializers, suppressStack: true,
                                    callback: (err) => {
                                      if (err) throw err;
                                      // The soap package writes xsi:nil="true" for null values but
                                      // declares xsi only when the WSDL's root does, and never a
                                      // www.w3.org one: declare it on the envelope, or a nil
                                      // element would not be namespace-well-formed XML.
                                      s.wsdl.xmlnsInEnvelope += ` xmlns:xsi="${XSI_NS}"`;
                                      resolve(s);
                                    } });
    if (authenticate) s.authenticate = authenticate;
  });
}

// WS-Security UsernameToken with a PasswordText password.
function checkUsernameToken(security) {
  const t = security && security.UsernameToken;
  if (!t) return false;
  const pw = textOf(t.Password);
  return t.Username === SECURE_USER && pw === SECURE_PASSWORD;
}

server.listen(PORT, HOST, async () => {
  await endpoint('calculator.wsdl', '/calculator', { CalculatorService: { CalculatorSoap: calculator(false) } }, false);
  await endpoint('calculator.wsdl', '/calculator12', { CalculatorService: { CalculatorSoap12: calculator(true) } }, true);
  await endpoint('crm.wsdl', '/crm', { CustomerService: { CustomerSoap: crm(false) } }, false);
  await endpoint('crm.wsdl', '/crm12', { CustomerService: { CustomerSoap12: crm(true) } }, true);
  // No port of the WSDL is at /crm-secure: the soap package then takes the
  // first port's binding but the last port's name, so both names are served.
  const secure = crm(false);
  await endpoint('crm.wsdl', '/crm-secure', { CustomerService: { CustomerSoap: secure, CustomerSoap12: secure } },
                 false, checkUsernameToken);
  process.stdout.write(`listening ${server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
