"""The interop lab: real SOAP stacks generate proxies from the bridge's served WSDL and call ITI-73 / ITI-74.

Part of tests/interop. One row per WSDL (`LabWsdl`: WSDL path, endpoint, calls), one `Stack` per SOAP toolkit
(how to build its proxies once per WSDL, cached by WSDL hash, and how to run its client for one call). Every
client prints one summary line of typed values it read from its own objects; the test compares it with the
same summary computed from the bridge's plain-HTTP answer to the same request.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from lxml import etree

from bridge import ns

HERE = Path(__file__).resolve().parent
CLIENTS = HERE / "clients"
NODE = HERE / "node"
INSTALL_HINT = "run `make interop-install` (as root: installs the Debian packages and the npm package)"
BUILD_ROOT = Path(os.environ.get("ROR_INTEROP_BUILD", Path(tempfile.gettempdir()) / "ror-bridge-interop"))
TIMEOUT = 180  # seconds for one build step or one client run: far above what they take (README table)
JAVA = Path("/usr/share/java")

C = {"csd": ns.CSD}


class LabError(AssertionError):
    """A lab step failed: a toolchain is missing, a generator or compiler failed, or a client failed."""


@dataclass(frozen=True)
class Call:
    """One call of the lab: an id for the test name and the client arguments (the same for every stack).

    args: `iti73 <function-urn> max <n>`, `iti73 <function-urn> otherID <code> <authority>`, or
    `iti74 <lastModified>`.
    """

    id: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class LabWsdl:
    """One WSDL the lab consumes: where it is served, the endpoint, and the calls (made from the data)."""

    name: str
    wsdl_path: str
    endpoint_path: str
    calls: Callable[[Any], Sequence[Call]]
    # The plain-HTTP request of a call, as the oracle sends it (no toolkit in between).
    plain_request: Callable[[Call], bytes]
    # The schemas the WSDL imports, part of the proxies' cache key.
    schema_paths: tuple[str, ...] = ()


def summary(csd: etree._Element | None, code: str | None) -> str:
    """The line every client prints: organisations, offers, first organisation's entityID and type code."""
    if csd is None:
        raise LabError("the answer holds no csd:CSD nor csd:queryResult")
    orgs = csd.findall("csd:organizationDirectory/csd:organization", C)
    services = csd.findall("csd:serviceDirectory/csd:service", C)
    first = orgs[0].get("entityID", "-") if orgs else "-"
    coded = orgs[0].find("csd:codedType", C) if orgs else None
    type_code = coded.get("code", "-") if coded is not None else "-"
    counts = f"organizations={len(orgs)} services={len(services)}"
    return f"{counts} first={first} type={type_code} code={code or '-'}"


def csd_request(call: Call) -> bytes:
    """The SOAP 1.2 request of a call of the IHE CSD WSDL, without WS-Addressing, written by hand."""
    if call.args[0] == "iti74":
        modified = f"<csd:lastModified>{call.args[1]}</csd:lastModified>"
        body = f"<csd:getModificationsRequest>{modified}</csd:getModificationsRequest>"
    else:
        urn, kind, *values = call.args[1:]
        if kind == "max":
            param = f"<csd:max>{values[0]}</csd:max>"
        else:
            param = f'<csd:otherID code="{values[0]}" assigningAuthorityName="{values[1]}"/>'
        body = (
            f'<csd:careServicesRequest><csd:function urn="{urn}" encapsulated="true">'
            f"<csd:requestParams>{param}</csd:requestParams></csd:function></csd:careServicesRequest>"
        )
    envelope = f'<env:Envelope xmlns:env="{ns.SOAP12}" xmlns:csd="{ns.CSD}">'
    return f"{envelope}<env:Body>{body}</env:Body></env:Envelope>".encode()


def expected_summary(endpoint: str, wsdl: LabWsdl, call: Call) -> str:
    """The oracle: the summary of the bridge's answer to the same call over plain HTTP."""
    answer = httpx.post(
        endpoint,
        content=wsdl.plain_request(call),
        headers={"Content-Type": "application/soap+xml; charset=utf-8"},
        timeout=60,
    )
    if answer.status_code != 200:
        raise LabError(f"plain HTTP call {call.id} answered {answer.status_code}: {answer.text[:500]}")
    root = etree.fromstring(answer.content)
    response = root.find(f".//{{{ns.CSD}}}careServicesResponse")
    code = response.get("code") if response is not None else None
    # ITI-74: getModificationsResponse/CSD; ITI-73: careServicesResponse/result/queryResult (the ROR v2.4
    # profile's envelope, of type CSD).
    csd = root.find(f".//{{{ns.CSD}}}CSD")
    return summary(csd if csd is not None else root.find(f".//{{{ns.CSD}}}queryResult"), code)


def run(command: Sequence[str | Path], cwd: Path, what: str) -> str:
    """Run one lab command; its failure is a LabError carrying the command's own output."""
    try:
        done = subprocess.run(
            [str(part) for part in command],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{what}: {exc.filename} not found; {INSTALL_HINT}") from None
    if done.returncode != 0:
        raise LabError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def result_line(output: str) -> str:
    """The client's summary line (the last line starting with `organizations=`)."""
    lines = [line.strip() for line in output.splitlines() if line.startswith("organizations=")]
    if not lines:
        raise LabError(f"the client printed no summary:\n{output[-2000:]}")
    return lines[-1]


def fingerprint(wsdl: LabWsdl, base_url: str, *sources: Path) -> str:
    """Hash of the served WSDL and schemas (its own address blanked out) and the client sources."""
    digest = hashlib.sha256()
    for url in (base_url + wsdl.wsdl_path, *(base_url + path for path in wsdl.schema_paths)):
        text = httpx.get(url, timeout=30).text.replace(base_url, "http://bridge")
        digest.update(text.encode())
    for source in sources:
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Stack:
    """One SOAP toolkit of the lab: its tools, how it builds proxies, how it runs one call."""

    name: str
    versions: tuple[str, ...]  # "11", "12"; "12wsa": SOAP 1.2 with WS-Addressing engaged by the client
    tools: tuple[str, ...]  # executables it needs on PATH
    sources: tuple[Path, ...]  # client sources (part of the cache key)
    build_steps: Callable[[Path, str, str], None] | None  # (workdir, wsdl_url, version) → proxies built
    command: Callable[[Path, str, str, str, Call], list[str | Path]]  # (workdir, wsdl, endpoint, ver, call)
    slow: bool = False
    # The LabWsdl rows (by name) its client implements: a new WSDL row runs on the stacks that list it.
    wsdls: tuple[str, ...] = ("ihe-csd",)
    jars: tuple[str, ...] = field(default=())  # Debian jars it needs under /usr/share/java
    probe: tuple[str, ...] = ()  # a command that fails when the toolkit's library is missing

    def check_tools(self) -> None:
        missing = [tool for tool in self.tools if shutil.which(tool) is None]
        missing += [jar for jar in self.jars if not (JAVA / jar).is_file()]
        if missing:
            raise LabError(f"{self.name}: {', '.join(missing)} missing; {INSTALL_HINT}")
        if self.probe and subprocess.run(self.probe, capture_output=True, check=False).returncode != 0:
            raise LabError(f"{self.name}: `{' '.join(self.probe)}` failed; {INSTALL_HINT}")

    def workdir(self, wsdl: LabWsdl, base_url: str, version: str) -> Path:
        """The proxies for this WSDL, built once (cached under BUILD_ROOT, keyed by the WSDL hash)."""
        self.check_tools()
        key = fingerprint(wsdl, base_url, *self.sources)
        wsdl_url = base_url + wsdl.wsdl_path
        target = BUILD_ROOT / f"{self.name}-{version}-{wsdl.name}-{key}"
        if (target / ".built").is_file() or self.build_steps is None:
            target.mkdir(parents=True, exist_ok=True)
            return target
        scratch = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=BUILD_ROOT.parent))
        try:
            self.build_steps(scratch, wsdl_url, version)
            (scratch / ".built").touch()
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return target


# ------------------------------------------------------------------------------------------------
# Mono ASMX (`wsdl` + `mcs`, SoapHttpClientProtocol)


def _asmx_build(work: Path, wsdl_url: str, version: str) -> None:
    protocol = "SOAP12" if version == "12" else "SOAP"
    run(
        ["wsdl", "-nologo", "-namespace:Lab.Asmx", f"-protocol:{protocol}", "-out:Proxy.cs", wsdl_url],
        work,
        "Mono wsdl",
    )
    run(
        [
            "mcs",
            "-nologo",
            "-r:System.Web.Services.dll",
            "-r:System.Xml.dll",
            "-out:lab.exe",
            "Proxy.cs",
            CLIENTS / "LabAsmx.cs",
        ],
        work,
        "mcs",
    )


def _asmx_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return ["mono", work / "lab.exe", endpoint, *call.args]


def _wcf_build(work: Path, wsdl_url: str, version: str) -> None:
    # The data types from Mono's `wsdl` (XmlSerializer classes); the contract is LabWcf.cs (svcutil of Mono
    # generates nothing usable from this WSDL: README "Interop lab").
    run(
        ["wsdl", "-nologo", "-namespace:Lab.Asmx", "-protocol:SOAP", "-out:Types.cs", wsdl_url],
        work,
        "Mono wsdl",
    )
    run(
        [
            "mcs",
            "-nologo",
            "-r:System.ServiceModel.dll",
            "-r:System.Runtime.Serialization.dll",
            "-r:System.Web.Services.dll",
            "-r:System.Xml.dll",
            "-out:lab.exe",
            "Types.cs",
            CLIENTS / "LabWcf.cs",
        ],
        work,
        "mcs",
    )


def _wcf_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return ["mono", work / "lab.exe", endpoint, version, *call.args]


# ------------------------------------------------------------------------------------------------
# Java: JAX-WS RI (wsimport) and Apache Axis 1.4 (WSDL2Java)

_JAXWS_CP = str(JAVA / "jaxws-rt.jar")
_AXIS_JARS = (
    "axis.jar",
    "axis-jaxrpc.jar",
    "axis-saaj.jar",
    "commons-discovery.jar",
    "commons-logging.jar",
    "wsdl4j.jar",
    "javax.activation.jar",
    "javax.mail.jar",
    "jaxb-api.jar",
)
_AXIS_CP = ":".join(str(JAVA / jar) for jar in _AXIS_JARS)


def _javac(work: Path, classpath: str, client: Path) -> None:
    sources = [str(path) for path in sorted((work / "src").rglob("*.java"))]
    run(
        ["javac", "-nowarn", "-encoding", "UTF-8", "-cp", classpath, "-d", "classes", *sources, client],
        work,
        "javac",
    )


def _jaxws_build(work: Path, wsdl_url: str, version: str) -> None:
    # -extension: the SOAP 1.2 binding is outside JAX-WS 2.x's standard; SOAP 1.1 needs nothing.
    extension = ["-extension"] if version == "12" else []
    (work / "src").mkdir()
    run(
        [
            "java",
            "-jar",
            JAVA / "jaxws-tools.jar",
            *extension,
            "-Xnocompile",
            "-s",
            "src",
            "-d",
            "src",
            "-p",
            "lab.jaxws",
            wsdl_url,
        ],
        work,
        "wsimport",
    )
    _javac(work, _JAXWS_CP, CLIENTS / "LabJaxws.java")


def _jaxws_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return [
        "java",
        "-cp",
        f"{work / 'classes'}:{_JAXWS_CP}",
        "lab.LabJaxws",
        wsdl_url,
        endpoint,
        version,
        *call.args,
    ]


def _axis_build(work: Path, wsdl_url: str, version: str) -> None:
    # --wrapArrays: without it Axis 1.4 maps csd:address (a wrapper of addressLine) to AddressLine[] and an
    # organisation's repeated address to AddressLine[][], which its own deserializer then cannot fill.
    run(
        [
            "java",
            "-cp",
            _AXIS_CP,
            "org.apache.axis.wsdl.WSDL2Java",
            "--wrapArrays",
            "-o",
            "src",
            "-p",
            "lab.axis",
            wsdl_url,
        ],
        work,
        "Axis WSDL2Java",
    )
    _javac(work, _AXIS_CP, CLIENTS / "LabAxis.java")


def _axis_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return ["java", "-cp", f"{work / 'classes'}:{_AXIS_CP}", "lab.LabAxis", endpoint, *call.args]


# ------------------------------------------------------------------------------------------------
# gSOAP (wsdl2h + soapcpp2 + g++)


def _gsoap_build(work: Path, wsdl_url: str, version: str) -> None:
    run(["wsdl2h", "-P", "-o", "csd.h", "-t", "/usr/share/gsoap/WS/typemap.dat", wsdl_url], work, "wsdl2h")
    # -1 / -2: the SOAP version of the generated proxy (one proxy class serves both bindings of the WSDL).
    flag = "-1" if version == "11" else "-2"
    run(["soapcpp2", flag, "-j", "-C", "-x", "-L", "-I/usr/share/gsoap/import", "csd.h"], work, "soapcpp2")
    proxies = sorted(path.name for path in work.glob("soap*Proxy.cpp"))
    run(
        [
            "g++",
            "-O0",
            "-w",
            "-I.",
            "-o",
            "lab",
            "soapC.cpp",
            *proxies,
            CLIENTS / "lab_gsoap.cpp",
            "-lgsoap++",
        ],
        work,
        "g++",
    )


def _gsoap_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return [work / "lab", endpoint, version, *call.args]


# ------------------------------------------------------------------------------------------------
# Scripted stacks: Perl SOAP::Lite, PHP SoapClient, node-soap (no build step)


def _perl_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return ["perl", CLIENTS / "lab.pl", endpoint, version, *call.args]


def _php_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return ["php", CLIENTS / "lab.php", wsdl_url, endpoint, version, *call.args]


def _zeep_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    return [sys.executable, CLIENTS / "lab_zeep.py", wsdl_url, endpoint, version, *call.args]


def _node_command(work: Path, wsdl_url: str, endpoint: str, version: str, call: Call) -> list[str | Path]:
    if not (NODE / "node_modules" / "soap" / "package.json").is_file():
        raise LabError(f"node-soap: tests/interop/node/node_modules/soap missing; {INSTALL_HINT}")
    return ["node", NODE / "lab.js", wsdl_url, endpoint, version, *call.args]


STACKS: list[Stack] = [
    Stack(
        "mono-asmx",
        ("11", "12"),
        ("wsdl", "mcs", "mono"),
        (CLIENTS / "LabAsmx.cs",),
        _asmx_build,
        _asmx_command,
    ),
    Stack(
        "mono-wcf",
        ("11", "12", "12wsa"),
        ("wsdl", "mcs", "mono"),
        (CLIENTS / "LabWcf.cs",),
        _wcf_build,
        _wcf_command,
    ),
    Stack(
        "jaxws-ri",
        ("11", "12"),
        ("java", "javac"),
        (CLIENTS / "LabJaxws.java",),
        _jaxws_build,
        _jaxws_command,
        jars=("jaxws-tools.jar", "jaxws-rt.jar"),
    ),
    Stack(
        "axis-1.4",
        ("11",),
        ("java", "javac"),
        (CLIENTS / "LabAxis.java",),
        _axis_build,
        _axis_command,
        jars=_AXIS_JARS,
    ),
    Stack(
        "gsoap",
        ("11", "12"),
        ("wsdl2h", "soapcpp2", "g++"),
        (CLIENTS / "lab_gsoap.cpp",),
        _gsoap_build,
        _gsoap_command,
        probe=("test", "-f", "/usr/include/stdsoap2.h"),
    ),
    Stack(
        "perl-soap-lite",
        ("11", "12"),
        ("perl",),
        (CLIENTS / "lab.pl",),
        None,
        _perl_command,
        probe=("perl", "-MSOAP::Lite", "-e", "1"),
    ),
    Stack(
        "php-soapclient",
        ("11", "12"),
        ("php",),
        (CLIENTS / "lab.php",),
        None,
        _php_command,
        probe=("php", "-r", "exit(class_exists('SoapClient') ? 0 : 1);"),
    ),
    Stack("node-soap", ("11", "12"), ("node",), (NODE / "lab.js",), None, _node_command),
    Stack("zeep", ("11", "12"), (), (CLIENTS / "lab_zeep.py",), None, _zeep_command),
]


# ------------------------------------------------------------------------------------------------
# The WSDLs of the lab. Another WSDL (e.g. the official ROR v2.4 one, SOAP 1.2, `urn:asip:ror:2015`) is one
# more LabWsdl row here, plus its calls in each stack's client (or a new client file in `sources`).

OI = "https://oi.esante.gouv.fr"


def csd_calls(dataset: Any) -> list[Call]:
    """ITI-73 (one IHE and one ROR stored function, encapsulated) and ITI-74, with values from the data."""
    providers = {
        offer["providedBy"]["reference"].split("/")[-1]
        for offer in dataset.resources["HealthcareService"].values()
    }
    code = None
    for org_id in dataset.ids("Organization"):
        resource = dataset.resources["Organization"][org_id]
        oi = next((i["value"] for i in resource.get("identifier", []) if i.get("system") == OI), None)
        if oi is not None and providers & set(dataset.subtree(org_id)):
            code = str(oi)
            break
    if code is None:
        raise LabError("the demo dataset has no internal organisation with offers")
    return [
        Call(
            "organization-search",
            ("iti73", "urn:ihe:iti:csd:2014:stored-function:organization-search", "max", "5"),
        ),
        Call(
            "internal-organization",
            ("iti73", "urn:ror:csd:stored-function:internal-organization", "otherID", code, OI),
        ),
        Call("iti74", ("iti74", "2000-01-01T00:00:00")),
    ]


WSDLS: list[LabWsdl] = [
    LabWsdl(
        name="ihe-csd",
        wsdl_path="/csd?wsdl",
        endpoint_path="/csd",
        calls=csd_calls,
        plain_request=csd_request,
    ),
]
