// Apache Axis 1.4 client of the interop lab (tests/interop): calls the bridge through the stub WSDL2Java
// generated from the served WSDL (package lab.axis, SOAP 1.1: Axis 1.4 has no SOAP 1.2 binding) and prints
// what it read, as typed values, for the test to compare with the bridge's plain-HTTP answer.
package lab;

import java.net.URL;
import javax.xml.bind.DatatypeConverter;
import lab.axis.CSD;
import lab.axis.CareServicesDiscovery;
import lab.axis.CareServicesDiscoveryServiceLocator;
import lab.axis.CareServicesRequest;
import lab.axis.CareServicesResponse;
import lab.axis.Function;
import lab.axis.GetModificationsRequest;
import lab.axis.Organization;
import lab.axis.OtherIDParam;
import lab.axis.RequestParams;
import lab.axis.Service;

public final class LabAxis {
    // args: endpoint iti73 <function-urn> max <n> | iti73 <urn> otherID <code> <authority> | iti74 <lastModified>
    public static void main(String[] args) throws Exception {
        CareServicesDiscovery port =
            new CareServicesDiscoveryServiceLocator().getCareServicesDiscoverySoap11(new URL(args[0]));
        CSD csd;
        String code = "-";
        if (args[1].equals("iti74")) {
            GetModificationsRequest request = new GetModificationsRequest();
            request.setLastModified(DatatypeConverter.parseDateTime(args[2]));
            csd = port.queryForUpdatedServices(request).getCSD();
        } else {
            // Axis 1.4 flattens the unbounded choice of requestParams into one property per parameter.
            RequestParams params = new RequestParams();
            if (args[3].equals("max")) {
                params.setMax(Integer.valueOf(args[4]));
            } else {
                OtherIDParam other = new OtherIDParam();
                other.setCode(args[4]);
                other.setAssigningAuthorityName(args[5]);
                params.setOtherID(other);
            }
            Function function = new Function();
            function.setUrn(args[2]);
            function.setEncapsulated(true);
            function.setRequestParams(params);
            CareServicesRequest request = new CareServicesRequest();
            request.setFunction(function);
            CareServicesResponse response = port.findMatchingCareServices(request);
            code = response.getCode() == null ? "-" : response.getCode().toString();
            csd = response.getResult().getQueryResult();
        }
        // Generated with --wrapArrays: the directories are beans (without it, Axis 1.4 cannot read an
        // organisation's repeated address, a wrapped array of addressLine).
        Organization[] orgs = csd.getOrganizationDirectory() == null ? null : csd.getOrganizationDirectory().getOrganization();
        orgs = orgs == null ? new Organization[0] : orgs;
        Service[] offers = csd.getServiceDirectory() == null ? null : csd.getServiceDirectory().getService();
        int services = offers == null ? 0 : offers.length;
        String first = orgs.length == 0 ? "-" : orgs[0].getEntityID();
        String type = orgs.length == 0 || orgs[0].getCodedType() == null || orgs[0].getCodedType().length == 0
            ? "-" : orgs[0].getCodedType()[0].getCode();
        System.out.println("organizations=" + orgs.length + " services=" + services + " first=" + first
            + " type=" + type + " code=" + code);
    }
}
