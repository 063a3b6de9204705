// WCF (System.ServiceModel under Mono) client of the interop lab (tests/interop). Mono's svcutil generates an
// empty namespace from the served WSDL, so the contract is written as `svcutil /serializer:XmlSerializer`
// writes it on .NET: a [ServiceContract] with XmlSerializerFormat over the data types Mono's `wsdl` generated
// (Lab.Asmx), through a ChannelFactory: BasicHttpBinding (SOAP 1.1) or a CustomBinding with Soap12 and no
// addressing. Mono needs XmlSerializerFormat on each operation (on the contract alone it falls back to the
// DataContractSerializer) and XmlElement(Namespace) on each body member (it ignores MessageBodyMember's).
// args: endpoint 11|12|12wsa iti73 <function-urn> max <n> | ... iti73 <urn> otherID <code> <authority> | ... iti74 <date>
using System;
using System.Globalization;
using System.ServiceModel;
using System.ServiceModel.Channels;
using Lab.Asmx;

[ServiceContract(Namespace = "urn:ihe:iti:csd:2013")]
[XmlSerializerFormat(Style = OperationFormatStyle.Document, Use = OperationFormatUse.Literal)]
public interface ICareServicesDiscovery
{
    [XmlSerializerFormat(Style = OperationFormatStyle.Document, Use = OperationFormatUse.Literal)]
    [OperationContract(Action = "urn:ihe:iti:csd:2013:GetCareServicesRequest", ReplyAction = "*")]
    FindResponse FindMatchingCareServices(FindRequest request);

    [XmlSerializerFormat(Style = OperationFormatStyle.Document, Use = OperationFormatUse.Literal)]
    [OperationContract(Action = "urn:ihe:iti:csd:2013:GetDirectoryModificationsRequest", ReplyAction = "*")]
    ModificationsResponse QueryForUpdatedServices(ModificationsRequest request);
}

[MessageContract(IsWrapped = false)]
public class FindRequest
{
    [MessageBodyMember(Namespace = "urn:ihe:iti:csd:2013", Order = 0)]
    [System.Xml.Serialization.XmlElement(Namespace = "urn:ihe:iti:csd:2013")]
    public careServicesRequest careServicesRequest;
}

[MessageContract(IsWrapped = false)]
public class FindResponse
{
    [MessageBodyMember(Namespace = "urn:ihe:iti:csd:2013", Order = 0)]
    [System.Xml.Serialization.XmlElement(Namespace = "urn:ihe:iti:csd:2013")]
    public careServicesResponse careServicesResponse;
}

[MessageContract(IsWrapped = false)]
public class ModificationsRequest
{
    [MessageBodyMember(Namespace = "urn:ihe:iti:csd:2013", Order = 0)]
    [System.Xml.Serialization.XmlElement(Namespace = "urn:ihe:iti:csd:2013")]
    public getModificationsRequest getModificationsRequest;
}

[MessageContract(IsWrapped = false)]
public class ModificationsResponse
{
    [MessageBodyMember(Namespace = "urn:ihe:iti:csd:2013", Order = 0)]
    [System.Xml.Serialization.XmlElement(Namespace = "urn:ihe:iti:csd:2013")]
    public getModificationsResponse getModificationsResponse;
}

public static class LabWcf
{
    public static int Main(string[] args)
    {
        Binding binding;
        // "12wsa": SOAP 1.2 with WS-Addressing 1.0 engaged (wsa:Action and wsa:To mustUnderstand, MessageID,
        // ReplyTo): WCF then checks the answer's RelatesTo and understands its mustUnderstand headers.
        if (args[1] == "12" || args[1] == "12wsa")
            binding = new CustomBinding(
                new TextMessageEncodingBindingElement(
                    args[1] == "12" ? MessageVersion.Soap12 : MessageVersion.Soap12WSAddressing10, System.Text.Encoding.UTF8),
                new HttpTransportBindingElement { MaxReceivedMessageSize = 64 * 1024 * 1024 });
        else
            binding = new BasicHttpBinding { MaxReceivedMessageSize = 64 * 1024 * 1024 };
        var factory = new ChannelFactory<ICareServicesDiscovery>(binding, new EndpointAddress(args[0]));
        ICareServicesDiscovery port = factory.CreateChannel();
        CSD csd;
        string code = "-";
        if (args[2] == "iti74")
        {
            var request = new getModificationsRequest
            {
                lastModified = DateTime.Parse(args[3], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
            };
            csd = port.QueryForUpdatedServices(new ModificationsRequest { getModificationsRequest = request })
                .getModificationsResponse.CSD;
        }
        else
        {
            var parameters = new requestParams();
            if (args[4] == "max")
            {
                parameters.Items = new object[] { int.Parse(args[5], CultureInfo.InvariantCulture) };
                parameters.ItemsElementName = new[] { ItemsChoiceType.max };
            }
            else
            {
                parameters.Items = new object[] { new otherIDParam { code = args[5], assigningAuthorityName = args[6] } };
                parameters.ItemsElementName = new[] { ItemsChoiceType.otherID };
            }
            var call = new function { urn = args[3], encapsulated = true, encapsulatedSpecified = true, requestParams = parameters };
            var request = new FindRequest { careServicesRequest = new careServicesRequest { Item = call } };
            careServicesResponse response = port.FindMatchingCareServices(request).careServicesResponse;
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
