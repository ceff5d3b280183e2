"""The data model every stage shares: records and their items, file input/output with
file:line errors and atomic writes, and the annotation tools' formats."""
