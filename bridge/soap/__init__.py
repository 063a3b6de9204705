"""Inbound edge: safe parsing, SOAP 1.1/1.2, WS-Addressing, faults and the WSDL."""
