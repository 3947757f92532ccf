"""Readers and writers for the formats bioprune reads and writes.

    inputs.py      format detection and ``iter_records`` (a bad record is a RecordError; reading goes on)
    records.py     RecordError and DeletedRecord: what a lenient reader yields besides Documents
    pubtator.py    PubTator in and out          pubmed_xml.py  PubMed / MEDLINE XML in (lxml iterparse)
    jsonl.py       JSON Lines in and out        bioc.py        BioC XML/JSON in, BioC JSON out
    outputs.py     the output-format interface  checkpoint.py  chunk-atomic output, journal and resume
    compression.py open a file, gunzipping it when it is gzip
"""
