"""A regional extraction is byte for byte the document it was before the pipeline's renovation (issue 12).

The digest below was first recorded on `main` before bridge/extraction.py became the bridge/pipeline/ package,
then again for the profile's placement (issue 11), checked equal to the placement branch's own output before
the renovation, and for the simulator's contacts of each confidentiality level (issue 15; the same code on the
previous dataset still gives the previous digest), and for the lieux' capacities as the UEs' typed elements
(issue 11 item 3: the document differs from the previous one by exactly the inserted accommodationCapacity and
residentialCapactity elements), and for the professionals' savoir-faire as the profile's credential (issue 11:
each provider's csd:specialty replaced by a csd:credential per situation, nothing else differs), and for the
lieux' équipements as the profile's devices (issue 11: one csd:device per ror-location-equipment in
deviceDirectory and the UEs' `equipment` naming them; with every csd:device and csd:equipment element taken
out, the new document is the previous one byte for byte, 230 906 bytes, sha256 484131ed…; 11 devices, 23
references, each reference resolved, each device named: test_every_device_is_named_by_a_unit). Regional
extraction of `ocean-indien`, simulator scale 240 seed 5, shipped tables; every way of producing the document
— searches, `$export`, small pages — must still give exactly those bytes. It pins the spool, the read-back
order, the batching and the writer, not only the entity sets the other tests check. It also changes when the
mapping tables, the writer or the simulator's dataset change on purpose: record it again then (`python -m
tests.test_extraction_bytes` prints the digest) and say so in the commit.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator

import pytest
from lxml import etree

from bridge import ns
from bridge.pipeline.extraction import extraction_request
from bridge.pipeline.progress import Source
from tests.test_extraction import MAPPINGS, REGION, extract, simulator

RECORDED_SHA256 = "e3a8218e83ef8a4e2b9cb6483f38b33859be9624e8215ec29a4f6c6cb0044f05"
RECORDED_BYTES = 236_834
# The document recorded before the équipements were mapped (the previous RECORDED_*).
BEFORE_DEVICES_SHA256 = "484131ed3e5823b5c887cddcc0dc3131d2fc2334edc94b6d001f61be59783497"
BEFORE_DEVICES_BYTES = 230_906


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    with simulator() as url:
        yield url


@pytest.mark.parametrize(
    ("source", "page_size"), [(Source.SEARCH, 25), (Source.SEARCH, 7), (Source.EXPORT, 25)]
)
async def test_a_regional_extraction_is_the_recorded_document(
    base: str, source: Source, page_size: int
) -> None:
    document = await extract(base, extraction_request(MAPPINGS, REGION, ()), source, page_size=page_size)
    assert len(document) == RECORDED_BYTES, "the document's size changed"
    assert hashlib.sha256(document).hexdigest() == RECORDED_SHA256


async def test_every_device_is_named_by_a_unit(base: str) -> None:
    """The recorded document's devices: each one a UE's `equipment` names (the same entityID), each named one
    written once; without them and their references, the document before équipements were mapped."""
    document = await extract(base, extraction_request(MAPPINGS, REGION, ()), Source.SEARCH)
    root = etree.fromstring(document)
    devices = [
        str(d.get("entityID")) for d in root.iterfind(f"{{{ns.CSD}}}deviceDirectory/{{{ns.CSD}}}device")
    ]
    refs = f".//{{{ns.CSD}}}facility/{{{ns.CSD}}}extension/{{{ns.CSD}}}equipment"
    named = [str(e.get("entityID")) for e in root.iterfind(refs)]
    assert devices, "the region's lieux hold équipements: the check proves something"
    assert len(devices) == len(set(devices))
    assert set(devices) == set(named)
    stripped = re.sub(rb"<csd:device [^>]*>.*?</csd:device>", b"", document, flags=re.S)
    stripped = re.sub(rb"<csd:equipment entityID=[^>]*/>", b"", stripped)  # not a contactPoint's equipment
    assert len(stripped) == BEFORE_DEVICES_BYTES
    assert hashlib.sha256(stripped).hexdigest() == BEFORE_DEVICES_SHA256


def _digest() -> tuple[str, int]:
    async def run(url: str) -> bytes:
        return await extract(url, extraction_request(MAPPINGS, REGION, ()), Source.SEARCH)

    with simulator() as url:
        document = asyncio.run(run(url))
    return hashlib.sha256(document).hexdigest(), len(document)


if __name__ == "__main__":
    print(*_digest())
