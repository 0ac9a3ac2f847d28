"""Namespace URIs, relationship types and content types of the parts this project reads or writes."""

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
R = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_RELS = "http://schemas.openxmlformats.org/package/2006/relationships"
CONTENT_TYPES = "http://schemas.openxmlformats.org/package/2006/content-types"
EXTENDED_PROPERTIES = "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"
DOC_PROPS_VTYPES = "http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"
XML = "http://www.w3.org/XML/1998/namespace"
DRAWINGML = "http://schemas.openxmlformats.org/drawingml/2006/main"
CHART = "http://schemas.openxmlformats.org/drawingml/2006/chart"
SPREADSHEET_DRAWING = "http://schemas.openxmlformats.org/drawingml/2006/spreadsheetDrawing"

#: relationship types (officeDocument/2006/relationships/<name>)
REL = R + "/"
REL_OFFICE_DOCUMENT = REL + "officeDocument"
REL_WORKSHEET = REL + "worksheet"
REL_CHARTSHEET = REL + "chartsheet"
REL_SHARED_STRINGS = REL + "sharedStrings"
REL_STYLES = REL + "styles"
REL_DRAWING = REL + "drawing"
REL_CHART = REL + "chart"
REL_CALC_CHAIN = REL + "calcChain"
REL_TABLE = REL + "table"
REL_EXTENDED_PROPERTIES = REL + "extended-properties"
REL_CORE_PROPERTIES = "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties"
REL_VBA_PROJECT = "http://schemas.microsoft.com/office/2006/relationships/vbaProject"
REL_CUSTOM_UI = "http://schemas.microsoft.com/office/2007/relationships/ui/extensibility"

#: content types
CT_WORKSHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
CT_DRAWING = "application/vnd.openxmlformats-officedocument.drawing+xml"
CT_CHART = "application/vnd.openxmlformats-officedocument.drawingml.chart+xml"
CT_XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
CT_XLSM_MAIN = "application/vnd.ms-excel.sheet.macroEnabled.main+xml"
CT_VBA_PROJECT = "application/vnd.ms-office.vbaProject"

#: well-known part names
CONTENT_TYPES_PART = "[Content_Types].xml"
PACKAGE_RELS_PART = "_rels/.rels"
APP_PART = "docProps/app.xml"


def q(ns: str, tag: str) -> str:
    """Clark notation ``{ns}tag``."""
    return f"{{{ns}}}{tag}"
