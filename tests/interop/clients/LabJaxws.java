// JAX-WS RI client of the interop lab (tests/interop): calls the bridge through the proxies wsimport generated
// from the served WSDL (package lab.jaxws) and prints what it read, as typed values, for the test to compare.
package lab;

import java.math.BigInteger;
import java.net.URL;
import java.util.List;
import javax.xml.bind.JAXBElement;
import javax.xml.datatype.DatatypeFactory;
import javax.xml.namespace.QName;
import javax.xml.ws.BindingProvider;
import lab.jaxws.CSD;
import lab.jaxws.CareServicesDiscovery;
import lab.jaxws.CareServicesDiscoveryService;
import lab.jaxws.CareServicesRequest;
import lab.jaxws.CareServicesResponse;
import lab.jaxws.Function;
import lab.jaxws.GetModificationsRequest;
import lab.jaxws.ObjectFactory;
import lab.jaxws.Organization;
import lab.jaxws.OtherIDParam;
import lab.jaxws.RequestParams;

public final class LabJaxws {
    // args: wsdl-url endpoint 11|12 iti73 <function-urn> max <n> | iti73 <urn> otherID <code> <authority>
    //       | iti74 <lastModified>
    public static void main(String[] args) throws Exception {
        CareServicesDiscoveryService service = new CareServicesDiscoveryService(new URL(args[0]));
        // getPort by name: wsimport without -extension (the SOAP 1.1 build) generates no getter for the
        // SOAP 1.2 port.
        String portName = args[2].equals("12") ? "CareServicesDiscoverySoap12" : "CareServicesDiscoverySoap11";
        CareServicesDiscovery port =
            service.getPort(new QName("urn:ihe:iti:csd:2013", portName), CareServicesDiscovery.class);
        ((BindingProvider) port).getRequestContext().put(BindingProvider.ENDPOINT_ADDRESS_PROPERTY, args[1]);
        ObjectFactory factory = new ObjectFactory();
        CSD csd;
        String code = "-";
        if (args[3].equals("iti74")) {
            GetModificationsRequest request = new GetModificationsRequest();
            request.setLastModified(DatatypeFactory.newInstance().newXMLGregorianCalendar(args[4]));
            csd = port.queryForUpdatedServices(request).getCSD();
        } else {
            RequestParams params = new RequestParams();
            List<Object> items = params.getIdOrOtherIDOrPrimaryName();
            if (args[5].equals("max")) {
                items.add(factory.createRequestParamsMax(Integer.valueOf(args[6])));
            } else {
                OtherIDParam other = new OtherIDParam();
                other.setCode(args[6]);
                other.setAssigningAuthorityName(args[7]);
                items.add(factory.createRequestParamsOtherID(other));
            }
            Function function = new Function();
            function.setUrn(args[4]);
            function.setEncapsulated(Boolean.TRUE);
            function.setRequestParams(params);
            CareServicesRequest request = new CareServicesRequest();
            request.setFunction(function);
            CareServicesResponse response = port.findMatchingCareServices(request);
            BigInteger result = response.getCode();
            code = result == null ? "-" : result.toString();
            csd = response.getResult().getQueryResult();
        }
        List<Organization> orgs = csd.getOrganizationDirectory().getOrganization();
        int services = csd.getServiceDirectory().getService().size();
        String first = orgs.isEmpty() ? "-" : orgs.get(0).getEntityID();
        String type = orgs.isEmpty() || orgs.get(0).getCodedType().isEmpty()
            ? "-" : orgs.get(0).getCodedType().get(0).getCode();
        System.out.println("organizations=" + orgs.size() + " services=" + services + " first=" + first
            + " type=" + type + " code=" + code);
    }
}
