// Mono ASMX client of the interop lab (tests/interop): calls the bridge through the SoapHttpClientProtocol
// proxy that Mono's `wsdl` tool generated from the served WSDL (namespace Lab.Asmx, SOAP 1.1 or 1.2 build),
// and prints what it read, as typed values, for the test to compare with the bridge's plain-HTTP answer.
// args: endpoint iti73 <function-urn> max <n> | iti73 <urn> otherID <code> <authority> | iti74 <lastModified>
using System;
using System.Globalization;
using Lab.Asmx;

public static class LabAsmx
{
    public static int Main(string[] args)
    {
        var proxy = new CareServicesDiscoveryService { Url = args[0] };
        CSD csd;
        string code = "-";
        if (args[1] == "iti74")
        {
            var request = new getModificationsRequest
            {
                lastModified = DateTime.Parse(args[2], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
            };
            csd = proxy.QueryForUpdatedServices(request).CSD;
        }
        else
        {
            // The unbounded choice of requestParams: one value per parameter, and its element name beside it.
            var parameters = new requestParams();
            if (args[3] == "max")
            {
                parameters.Items = new object[] { int.Parse(args[4], CultureInfo.InvariantCulture) };
                parameters.ItemsElementName = new[] { ItemsChoiceType.max };
            }
            else
            {
                parameters.Items = new object[] { new otherIDParam { code = args[4], assigningAuthorityName = args[5] } };
                parameters.ItemsElementName = new[] { ItemsChoiceType.otherID };
            }
            var call = new function { urn = args[2], encapsulated = true, encapsulatedSpecified = true, requestParams = parameters };
            careServicesResponse response = proxy.FindMatchingCareServices(new careServicesRequest { Item = call });
            code = response.code ?? "-";
            csd = ((result)response.Item).queryResult;
        }
        organization[] orgs = csd.organizationDirectory ?? new organization[0];
        int services = (csd.serviceDirectory ?? new service[0]).Length;
        string first = orgs.Length == 0 ? "-" : orgs[0].entityID;
        string type = orgs.Length == 0 || orgs[0].codedType == null || orgs[0].codedType.Length == 0
            ? "-" : orgs[0].codedType[0].code;
        Console.WriteLine("organizations={0} services={1} first={2} type={3} code={4}", orgs.Length, services, first, type, code);
        return 0;
    }
}
