#!/usr/bin/perl
# Perl SOAP::Lite client of the interop lab (tests/interop): SOAP::Lite binds no document/literal WSDL, so
# the idiomatic call builds the body with SOAP::Data (elements, attributes, namespace) and reads the answer
# through SOAP::SOM paths; prints what it read, as typed values, for the test to compare.
# args: endpoint 11|12 iti73 <function-urn> max <n> | ... iti73 <urn> otherID <code> <authority>
#       | ... iti74 <lastModified>
use strict;
use warnings;
use SOAP::Lite;

my ($endpoint, $version, $transaction, @rest) = @ARGV;
my $CSD = 'urn:ihe:iti:csd:2013';
my $client = SOAP::Lite->proxy($endpoint)->ns($CSD, 'csd')->autotype(0)->readable(0);
$client->soapversion($version eq '12' ? '1.2' : '1.1');
$client->envprefix('soap');
my ($som, $base);
if ($transaction eq 'iti74') {
    $client->on_action(sub { '"urn:ihe:iti:csd:2013:GetDirectoryModificationsRequest"' });
    my $method = SOAP::Data->name('csd:getModificationsRequest');
    $som = $client->call($method, SOAP::Data->name('csd:lastModified' => $rest[0]));
    $base = '//getModificationsResponse/CSD';
} else {
    my ($urn, $kind, @values) = @rest;
    my $param = $kind eq 'max'
        ? SOAP::Data->name('csd:max' => $values[0])
        : SOAP::Data->name('csd:otherID')->attr({code => $values[0], assigningAuthorityName => $values[1]});
    my $function = SOAP::Data->name('csd:function' => \SOAP::Data->name('csd:requestParams' => \$param))
        ->attr({urn => $urn, encapsulated => 'true'});
    $client->on_action(sub { '"urn:ihe:iti:csd:2013:GetCareServicesRequest"' });
    $som = $client->call(SOAP::Data->name('csd:careServicesRequest'), $function);
    $base = '//careServicesResponse/result/queryResult';
}
die 'fault: ' . $som->faultstring . "\n" if $som->fault;
my @orgs = $som->dataof("$base/organizationDirectory/organization");
my @services = $som->dataof("$base/serviceDirectory/service");
my $first = @orgs ? $orgs[0]->attr->{entityID} : '-';
my $type = $som->dataof("$base/organizationDirectory/[1]/codedType");
my $code = $som->dataof('//careServicesResponse');
printf "organizations=%d services=%d first=%s type=%s code=%s\n", scalar @orgs, scalar @services, $first,
    ($type ? $type->attr->{code} : '-'), (($code && defined $code->attr->{code}) ? $code->attr->{code} : '-');
