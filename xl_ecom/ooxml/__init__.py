"""The one OOXML layer: parts of a .xlsx/.xlsm package read and edited with a hardened lxml parser.

- :mod:`.namespaces` — the one copy of the namespace, relationship-type and content-type constants;
- :mod:`.xml` — the one XML parser (no DTD, no entities, no network) and the serialiser;
- :mod:`.relationships` — ``.rels`` parts; :mod:`.contenttypes` — ``[Content_Types].xml``;
- :mod:`.workbook` — the one reader of the sheet list (name, sheetId, r:id, part, state);
- :mod:`.worksheet` — cells of a sheet part; :mod:`.calcchain` — ``xl/calcChain.xml`` kept
  consistent with the formulas; :mod:`.app` — ``docProps/app.xml`` (TitlesOfParts / HeadingPairs).
"""
