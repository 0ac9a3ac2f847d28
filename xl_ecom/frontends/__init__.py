"""Front ends: the Excel UDFs and ribbon macros (through xlwings) and the command line. Each is a thin
way into the same workflow functions; only this layer imports xlwings at run time."""
