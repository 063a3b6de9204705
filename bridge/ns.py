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

# The official ROR CSD v2.4 profile (ANS, shared/reference/ror-v24/): the WSDL's target namespace (the
# TR-Notif operation's root elements and `erreur`), its soapActions, and the URN of its reading function.
ROR: Final = "urn:asip:ror:2015"
ACTION_ROR_SEARCH: Final = "urn:asip:ror:2015:stored-function:ror-search"
ACTION_ROR_UPDATE: Final = "urn:asip:ror:2015:stored-function:ror-update"
ROR_READ_URN: Final = "urn:asip:ror:lecture:offreSoinEtablissement:2017"
# WS-Addressing 1.0 Metadata §4.4.4 default action of the TR-Notif operation's output (the WSDL names none).
ACTION_ROR_NOTIF_RESPONSE: Final = (
    "urn:asip:ror:2015/CareServicesRequest_PortType/TR-Notif-ListeEtablissementsMajApresDate_DemandeResponse"
)
# The profile's request and answer elements (TR_Lecture children of csd:function; TR-Notif roots in ns.ROR).
ROR_READ_ESTABLISHMENT: Final = "TR_Lecture-OffresSanteEtablissement"
ROR_READ_INTERNAL_ORGANIZATION: Final = "TR_Lecture-OffreSanteOrganisationInterne"
ROR_NOTIF_REQUEST: Final = "TR-Notif-ListeEtablissementsMajApresDate_Demande"
ROR_NOTIF_RESPONSE: Final = "TR-Notif-ListeEtablissementMajApresDate_Reponse"
# Assigning authority of the idNatStruct (the profile's id_etablissement, PLATINES validation_identifiants).
OID_IDNATSTRUCT: Final = "1.2.250.1.71.4.2.2"
