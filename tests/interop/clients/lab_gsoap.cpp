// gSOAP client of the interop lab (tests/interop): calls the bridge through the C++ proxy that wsdl2h and
// soapcpp2 generated from the served WSDL, and prints what it read (typed values) for the test to compare.
// args: endpoint 11|12 iti73 <function-urn> max <n> | ... iti73 <urn> otherID <code> <authority>
//       | ... iti74 <lastModified, read as UTC>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <string>

#include "soapCareServicesDiscoverySoap12BindingProxy.h"
#include "CareServicesDiscoverySoap12Binding.nsmap"

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *endpoint = argv[1];
    CareServicesDiscoverySoap12BindingProxy proxy(endpoint);
    // The SOAP version (argv[2]) was chosen when the proxy was generated: soapcpp2 -1 or -2.
    ns1__CSD *csd = NULL;
    std::string code = "-";
    if (std::strcmp(argv[3], "iti74") == 0) {
        struct tm when = {};
        if (strptime(argv[4], "%Y-%m-%dT%H:%M:%S", &when) == NULL) return 2;
        _ns1__getModificationsRequest request;
        request.lastModified = timegm(&when);
        _ns1__getModificationsResponse response;
        if (proxy.QueryForUpdatedServices(&request, response) != SOAP_OK) {
            proxy.soap_stream_fault(std::cerr);
            return 1;
        }
        csd = response.CSD;
    } else {
        // The unbounded choice of requestParams: a vector of unions, each with its variant selector.
        ns1__requestParams params;
        __ns1__union_requestParams item;
        std::string other_code, authority;
        ns1__otherIDParam other;
        if (std::strcmp(argv[5], "max") == 0) {
            item.__union_requestParams = SOAP_UNION__ns1__union_requestParams_max_;
            item.union_requestParams.max_ = std::atoi(argv[6]);
        } else {
            other_code = argv[6];
            authority = argv[7];
            other.code = &other_code;
            other.assigningAuthorityName = &authority;
            item.__union_requestParams = SOAP_UNION__ns1__union_requestParams_otherID;
            item.union_requestParams.otherID = &other;
        }
        params.__union_requestParams.push_back(item);
        std::string urn = argv[4];
        bool encapsulated = true;
        ns1__function function;
        function.urn = &urn;
        function.encapsulated = &encapsulated;
        function.requestParams = &params;
        ns1__careServicesRequest request;
        request.__union_careServicesRequest = SOAP_UNION__ns1__union_careServicesRequest_function;
        request.union_careServicesRequest.function = &function;
        ns1__careServicesResponse response;
        if (proxy.FindMatchingCareServices(&request, response) != SOAP_OK) {
            proxy.soap_stream_fault(std::cerr);
            return 1;
        }
        if (response.code != NULL) code = *response.code;
        if (response.__union_careServicesResponse != SOAP_UNION__ns1__union_careServicesResponse_result) {
            std::fprintf(stderr, "the answer holds no result\n");
            return 1;
        }
        csd = response.union_careServicesResponse.result->queryResult;
    }
    size_t orgs = csd->organizationDirectory ? csd->organizationDirectory->organization.size() : 0;
    size_t services = csd->serviceDirectory ? csd->serviceDirectory->service.size() : 0;
    std::string first = "-", type = "-";
    if (orgs > 0) {
        ns1__organization *organization = csd->organizationDirectory->organization[0];
        first = organization->entityID;
        if (!organization->codedType.empty()) type = organization->codedType[0]->code;
    }
    std::printf("organizations=%zu services=%zu first=%s type=%s code=%s\n", orgs, services, first.c_str(),
                type.c_str(), code.c_str());
    return 0;
}
