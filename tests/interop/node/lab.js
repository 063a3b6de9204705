// node-soap client of the interop lab (tests/interop): a client built from the served WSDL, SOAP 1.1 or 1.2
// port, and prints what it read (typed values) for the test to compare with the bridge's plain-HTTP answer.
// args: wsdl-url endpoint 11|12 iti73 <function-urn> max <n> | ... iti73 <urn> otherID <code> <authority>
//       | ... iti74 <lastModified>
'use strict';
const soap = require('soap');

const [wsdl, endpoint, version, transaction, ...rest] = process.argv.slice(2);
// An empty directory (<csd:serviceDirectory/>) comes back as '' or null, one child as an object, several as
// an array: normalise to an array.
const list = (value) => (value === undefined || value === null || value === '' ? [] : Array.isArray(value) ? value : [value]);

async function main() {
  const client = await soap.createClientAsync(wsdl, { forceSoap12Headers: version === '12' });
  client.setEndpoint(endpoint);
  const port = client.CareServicesDiscoveryService[version === '12' ? 'CareServicesDiscoverySoap12' : 'CareServicesDiscoverySoap11'];
  let csd;
  let code = '-';
  if (transaction === 'iti74') {
    const [answer] = await new Promise((resolve, reject) =>
      port.QueryForUpdatedServices({ lastModified: rest[0] }, (error, ...result) => (error ? reject(error) : resolve(result))));
    csd = answer.CSD;
  } else {
    const [urn, kind, ...values] = rest;
    // Attributes go under `attributes`; the choice of requestParams is plain keys.
    const params = kind === 'max' ? { max: Number(values[0]) }
      : { otherID: { attributes: { code: values[0], assigningAuthorityName: values[1] } } };
    const request = { function: { attributes: { urn, encapsulated: true }, requestParams: params } };
    const [answer] = await new Promise((resolve, reject) =>
      port.FindMatchingCareServices(request, (error, ...result) => (error ? reject(error) : resolve(result))));
    if (answer.attributes && answer.attributes.code !== undefined) code = String(answer.attributes.code);
    csd = answer.result.queryResult;
  }
  const orgs = list(csd.organizationDirectory && csd.organizationDirectory.organization);
  const services = list(csd.serviceDirectory && csd.serviceDirectory.service);
  const first = orgs.length ? orgs[0].attributes.entityID : '-';
  const types = orgs.length ? list(orgs[0].codedType) : [];
  const type = types.length ? types[0].attributes.code : '-';
  console.log(`organizations=${orgs.length} services=${services.length} first=${first} type=${type} code=${code}`);
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
