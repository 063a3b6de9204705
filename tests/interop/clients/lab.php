<?php
// PHP SoapClient client of the interop lab (tests/interop): WSDL mode on the served WSDL, SOAP 1.1 or 1.2,
// and prints what it read (typed values) for the test to compare with the bridge's plain-HTTP answer.
// args: wsdl-url endpoint 11|12 iti73 <function-urn> max <n> | ... iti73 <urn> otherID <code> <authority>
//       | ... iti74 <lastModified>
[, $wsdl, $endpoint, $version, $transaction] = $argv;
$rest = array_slice($argv, 5);
$client = new SoapClient($wsdl, [
    'soap_version' => $version === '12' ? SOAP_1_2 : SOAP_1_1,
    'location' => $endpoint,
    'exceptions' => true,
    'cache_wsdl' => WSDL_CACHE_NONE,
    'features' => SOAP_SINGLE_ELEMENT_ARRAYS,
]);
$code = '-';
if ($transaction === 'iti74') {
    $csd = $client->QueryForUpdatedServices(['lastModified' => $rest[0]])->CSD;
} else {
    [$urn, $kind] = $rest;
    $params = $kind === 'max'
        ? ['max' => (int) $rest[2]]
        : ['otherID' => ['code' => $rest[2], 'assigningAuthorityName' => $rest[3]]];
    $response = $client->FindMatchingCareServices(
        ['function' => ['urn' => $urn, 'encapsulated' => true, 'requestParams' => $params]]
    );
    $code = isset($response->code) ? (string) $response->code : '-';
    $csd = $response->result->queryResult;
}
$orgs = $csd->organizationDirectory->organization ?? [];
$services = $csd->serviceDirectory->service ?? [];
$first = $orgs ? $orgs[0]->entityID : '-';
$type = ($orgs && isset($orgs[0]->codedType)) ? $orgs[0]->codedType[0]->code : '-';
printf("organizations=%d services=%d first=%s type=%s code=%s\n", count($orgs), count($services), $first, $type, $code);
