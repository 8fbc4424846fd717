"""Plugin health: installed marketplace services over HTTP, MCP servers over their protocol.

No database work here: specs go in, `PluginChecked` values come out (see `outcome`).
"""
