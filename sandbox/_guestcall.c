/* One plugin call in C: the fast path of sandbox/raw.py's RawCallSite.

A plugin call through ctypes makes six foreign calls (set fuel, set the epoch deadline,
aspen_alloc, the export, aspen_free, read the fuel left), each 0.5 to 1 us of ctypes argument
and result handling, plus the Python around them. Here the same sequence is one C call.

Nothing is linked: Python passes the addresses of the wasmtime C API functions (taken from
wasmtime-py's own library handle, so the same library the rest of the sandbox uses) and of the
store, memory and functions, in a CallSite struct whose layout sandbox/raw.py mirrors with
ctypes and checks against SITE_BYTES. Checks are the same as the Python path's: the pointer the
guest allocator returns must lie inside memory, the output buffer must lie inside memory and be
at most out_max bytes. Traps and errors are handed back as addresses for Python to decode.

The GIL is released around every entry into guest code (a guest may run until its epoch
deadline; the event loop must keep going), and taken back before any Python object is touched.
Host functions called by the guest take it themselves (ctypes callbacks do).
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint64_t lo;
    uint64_t hi;
} val_raw; /* wasmtime_val_raw_t: a 16-byte union; i32 and i64 sit in the low 8 bytes */

typedef void *(*call_unchecked_fn)(void *ctx, const void *func, val_raw *vals, size_t n, void **trap);
typedef void *(*set_fuel_fn)(void *ctx, uint64_t fuel);
typedef void *(*get_fuel_fn)(const void *ctx, uint64_t *fuel);
typedef void (*set_epoch_fn)(void *ctx, uint64_t ticks);
typedef uint8_t *(*memory_data_fn)(const void *ctx, const void *mem);
typedef size_t (*memory_size_fn)(const void *ctx, const void *mem);

typedef struct {
    call_unchecked_fn call_unchecked;
    set_fuel_fn set_fuel;
    get_fuel_fn get_fuel;
    set_epoch_fn set_epoch_deadline;
    memory_data_fn memory_data;
    memory_size_fn memory_size;
    void *ctx;   /* wasmtime_context_t* */
    void *mem;   /* wasmtime_memory_t* */
    void *alloc; /* wasmtime_func_t* of aspen_alloc */
    void *free;  /* wasmtime_func_t* of aspen_free, or NULL */
    uint64_t out_max;
} CallSite;

enum { OK = 0, TRAPPED = 1, FAULT = 2 };

/* (TRAPPED, (error_address, trap_address)) */
static PyObject *trapped(void *error, void *trap) {
    return Py_BuildValue("(i(KK))", TRAPPED, (unsigned long long)(uintptr_t)error,
                         (unsigned long long)(uintptr_t)trap);
}

static int enter(CallSite *site, const void *func, val_raw *vals, void **error, void **trap) {
    *trap = NULL;
    Py_BEGIN_ALLOW_THREADS
    *error = site->call_unchecked(site->ctx, func, vals, 2, trap);
    Py_END_ALLOW_THREADS
    return *error == NULL && *trap == NULL;
}

/* Copy data into a buffer from the guest's allocator: 0 and *ptr on success, else a result. */
static PyObject *copy_in(CallSite *site, const char *data, Py_ssize_t n, uint32_t *ptr) {
    val_raw vals[2] = {{(uint64_t)(uint32_t)n, 0}, {0, 0}};
    void *error, *trap;
    if (!enter(site, site->alloc, vals, &error, &trap))
        return trapped(error, trap);
    *ptr = (uint32_t)vals[0].lo;
    uint8_t *base = site->memory_data(site->ctx, site->mem);
    size_t size = site->memory_size(site->ctx, site->mem);
    if (*ptr == 0 || base == NULL || (uint64_t)*ptr + (uint64_t)n > size)
        return Py_BuildValue("(iN)", FAULT, PyUnicode_FromFormat(
            "aspen_alloc(%zd) returned an unusable pointer %u: guest buffer [%u, %u+%zd) is outside "
            "memory of %zu bytes", n, *ptr, *ptr, *ptr, n, size));
    memcpy(base + *ptr, data, (size_t)n);
    return NULL;
}

static CallSite *site_of(PyObject *address) {
    CallSite *site = (CallSite *)PyLong_AsVoidPtr(address);
    if (site == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "null call site");
    return site;
}

/* call(site, func, payload | None, fuel, ticks) -> (status, value, fuel_left)
   OK: value is the output bytes or None. TRAPPED: (error, trap) addresses. FAULT: a message. */
static PyObject *guest_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "call(site, func, payload, fuel, ticks)");
        return NULL;
    }
    CallSite *site = site_of(args[0]);
    if (site == NULL)
        return NULL;
    void *func = PyLong_AsVoidPtr(args[1]);
    unsigned long long fuel = PyLong_AsUnsignedLongLong(args[3]);
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *payload = args[2];
    if (payload != Py_None && !PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "payload: bytes or None");
        return NULL;
    }
    PyObject *result = NULL;
    void *trap;
    void *error = site->set_fuel(site->ctx, fuel);
    if (error != NULL)
        return Py_BuildValue("(i(KK)K)", TRAPPED, (unsigned long long)(uintptr_t)error, 0ULL, 0ULL);
    site->set_epoch_deadline(site->ctx, ticks);

    val_raw vals[2] = {{0, 0}, {0, 0}};
    if (payload != Py_None) {
        Py_ssize_t n = PyBytes_GET_SIZE(payload);
        uint32_t ptr = 0;
        result = copy_in(site, PyBytes_AS_STRING(payload), n, &ptr);
        if (result == NULL) {
            vals[0].lo = ptr;
            vals[1].lo = (uint64_t)(uint32_t)n;
        }
    }
    if (result == NULL) {
        if (!enter(site, func, vals, &error, &trap)) {
            result = trapped(error, trap);
        } else {
            uint64_t packed = vals[0].lo;
            uint32_t ptr = (uint32_t)(packed >> 32), n = (uint32_t)packed;
            if (packed == 0) {
                result = Py_BuildValue("(iO)", OK, Py_None);
            } else if (n > site->out_max) {
                result = Py_BuildValue("(iN)", FAULT, PyUnicode_FromFormat(
                    "guest returned a buffer of %u bytes, over %llu", n, (unsigned long long)site->out_max));
            } else {
                uint8_t *base = site->memory_data(site->ctx, site->mem);
                size_t size = site->memory_size(site->ctx, site->mem);
                if (base == NULL || (uint64_t)ptr + n > size) {
                    result = Py_BuildValue("(iN)", FAULT, PyUnicode_FromFormat(
                        "guest returned a buffer outside its memory: guest range [%u, %u+%u) is outside "
                        "memory of %zu bytes", ptr, ptr, n, size));
                } else {
                    PyObject *out = PyBytes_FromStringAndSize((const char *)base + ptr, n);
                    if (out == NULL)
                        return NULL;
                    if (site->free != NULL) {
                        vals[0].lo = ptr;
                        vals[1].lo = n;
                        if (!enter(site, site->free, vals, &error, &trap)) {
                            Py_DECREF(out);
                            result = trapped(error, trap);
                        }
                    }
                    if (result == NULL)
                        result = Py_BuildValue("(iN)", OK, out);
                }
            }
        }
    }
    if (result == NULL)
        return NULL;
    uint64_t left = 0;
    if (site->get_fuel(site->ctx, &left) != NULL)
        left = 0; /* fuel is always enabled on our engines; an error here only skews the stat */
    PyObject *status = PyTuple_GET_ITEM(result, 0), *value = PyTuple_GET_ITEM(result, 1);
    PyObject *triple = Py_BuildValue("(OOK)", status, value, (unsigned long long)left);
    Py_DECREF(result);
    return triple;
}

/* copy_in(site, data) -> (status, value): OK with the guest pointer, TRAPPED or FAULT.
   For host functions that hand data back to the guest, inside a call (fuel keeps running). */
static PyObject *guest_copy_in(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "copy_in(site, data: bytes)");
        return NULL;
    }
    CallSite *site = site_of(args[0]);
    if (site == NULL)
        return NULL;
    uint32_t ptr = 0;
    PyObject *failed = copy_in(site, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), &ptr);
    if (failed != NULL)
        return failed;
    return Py_BuildValue("(ik)", OK, (unsigned long)ptr);
}

static PyMethodDef methods[] = {
    {"call", (PyCFunction)(void (*)(void))guest_call, METH_FASTCALL, "One plugin call: fuel, deadline, input, export, output."},
    {"copy_in", (PyCFunction)(void (*)(void))guest_copy_in, METH_FASTCALL, "Copy bytes into a guest-allocated buffer."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_guestcall", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__guestcall(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "SITE_BYTES", (long)sizeof(CallSite)) < 0 ||
        PyModule_AddIntConstant(m, "OK", OK) < 0 || PyModule_AddIntConstant(m, "TRAPPED", TRAPPED) < 0 ||
        PyModule_AddIntConstant(m, "FAULT", FAULT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
