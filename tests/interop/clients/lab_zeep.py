"""zeep client of the interop lab (tests/interop): a client on the served WSDL, SOAP 1.1 or 1.2 port.

Part of tests/interop. Prints what it read (typed values) for the test to compare with the bridge's
plain-HTTP answer. args: wsdl-url endpoint 11|12 iti73 <urn> max <n> | iti73 <urn> otherID <code> <authority>
| iti74 <lastModified>
"""

from __future__ import annotations

import sys
from typing import Any

import zeep


def main(argv: list[str]) -> None:
    wsdl, endpoint, version, transaction, *rest = argv
    client = zeep.Client(wsdl)
    port = "CareServicesDiscoverySoap12" if version == "12" else "CareServicesDiscoverySoap11"
    service = client.bind("CareServicesDiscoveryService", port)
    service._binding_options["address"] = endpoint  # zeep's documented way to move a port
    code = "-"
    if transaction == "iti74":
        csd: Any = service.QueryForUpdatedServices(lastModified=rest[0])
    else:
        urn, kind, *values = rest
        # The unbounded choice of requestParams is zeep's `_value_1`: a list of {element name: value}.
        param: dict[str, Any] = (
            {"max": int(values[0])}
            if kind == "max"
            else {"otherID": {"code": values[0], "assigningAuthorityName": values[1]}}
        )
        answer = service.FindMatchingCareServices(
            function={"urn": urn, "encapsulated": True, "requestParams": {"_value_1": [param]}}
        )
        code = "-" if answer.code is None else str(answer.code)
        csd = answer.result.queryResult
    # An empty directory (<csd:serviceDirectory/>) is None in zeep.
    orgs = (csd.organizationDirectory.organization if csd.organizationDirectory else None) or []
    services = (csd.serviceDirectory.service if csd.serviceDirectory else None) or []
    first = orgs[0].entityID if orgs else "-"
    kind_code = orgs[0].codedType[0].code if orgs and orgs[0].codedType else "-"
    print(f"organizations={len(orgs)} services={len(services)} first={first} type={kind_code} code={code}")


if __name__ == "__main__":
    main(sys.argv[1:])
