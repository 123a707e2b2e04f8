"""The engines behind the server, one module per engine.

:mod:`.base` is the interface every engine implements; :mod:`.sources` turns a model's SOURCE
(``builtin``, a ``.gguf`` path, an upstream URL, ...) into a typed value and the value into
its engine.
"""
