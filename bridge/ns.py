"""Namespace URIs, SOAP/WS-Addressing action URIs and stored-function URNs: the only place they are typed.

Leaf module shared by soap/, csd/ and compare/. Sources: docs/csd-wire-format.md §2 and §4.
"""

from typing import Final

CSD: Final = "urn:ihe:iti:csd:2013"
SOAP12: Final = "http://www.w3.org/2003/05/soap-envelope"
SOAP11: Final = "http://schemas.xmlsoap.org/soap/envelope/"
WSA: Final = "http://www.w3.org/2005/08/addressing"
WSA_ANONYMOUS: Final = "http://www.w3.org/2005/08/addressing/anonymous"
XML: Final = "http://www.w3.org/XML/1998/namespace"
XSD: Final = "http://www.w3.org/2001/XMLSchema"
XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
WSDL: Final = "http://schemas.xmlsoap.org/wsdl/"
WSDL_SOAP11: Final = "http://schemas.xmlsoap.org/wsdl/soap/"
WSDL_SOAP12: Final = "http://schemas.xmlsoap.org/wsdl/soap12/"
WSAM: Final = "http://www.w3.org/2007/05/addressing/metadata"
# `urn` of the bridge's own csd:extension trees (ROR data with no element in CSD nor in the v2.4 profile);
# their content is unqualified, the one child the profile's extension type leaves open.
ROR_EXT: Final = "urn:ror:csd:extension"

# WS-Addressing actions (IHE ITI-73 / ITI-74 as implemented by OpenInfoMan, DHIS2, MOTECH).
ACTION_ITI73_REQUEST: Final = "urn:ihe:iti:csd:2013:GetCareServicesRequest"
ACTION_ITI73_RESPONSE: Final = "urn:ihe:iti:csd:2013:GetCareServicesResponse"
ACTION_ITI74_REQUEST: Final = "urn:ihe:iti:csd:2013:GetDirectoryModificationsRequest"
ACTION_ITI74_RESPONSE: Final = "urn:ihe:iti:csd:2013:GetDirectoryModificationsResponse"
ACTION_FAULT: Final = "http://www.w3.org/2005/08/addressing/soap/fault"


def qn(namespace: str, local: str) -> str:
    """Clark notation `{ns}local`, the form lxml uses for qualified names."""
    return f"{{{namespace}}}{local}"


# Namespace of the bridge's own SOAP fault subcodes and fault detail elements.
FAULT: Final = "urn:ror:csd:fault"
