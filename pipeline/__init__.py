"""The message pipeline: route, remember, retrieve, generate; shared by every channel and the HTTP API.

It sits above router/, memory/, knowledge/ and inference/ (through their protocols)
and below gateway/, which wires concrete backends into it.
"""
