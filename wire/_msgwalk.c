/* wire._msgwalk: the decoding bound of wire/msgwalk.h as a module of its own, so the frame
codec (aspen/protocol.py) prices a message before decoding it without loading the sandbox. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "msgwalk.h"

static PyMethodDef methods[] = {
    {"decode_bound", (PyCFunction)(void (*)(void))decode_bound, METH_FASTCALL, "Why msgpack may not be decoded, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_msgwalk", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__msgwalk(void) { return PyModule_Create(&module); }
