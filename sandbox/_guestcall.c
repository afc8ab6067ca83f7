/* One plugin call in C: the fast path behind sandbox/raw.py's CallSite.

A plugin call through ctypes makes six foreign calls (set fuel, set the epoch deadline,
aspen_alloc, the export, aspen_free, read the fuel left), each 0.5 to 1 us of ctypes argument
and result handling, plus the Python around them. Here the same sequence is one C call.

Nothing is linked: Python passes the addresses of the wasmtime C API functions (taken from
wasmtime-py's own library handle, so the same library the rest of the sandbox uses) and of the
store, memory and functions, in a CallSite struct whose layout sandbox/raw.py mirrors with
ctypes and checks against SITE_BYTES. Checks are the same as the Python path's: the pointer the
guest allocator returns must lie inside memory, the output buffer must lie inside memory and be
at most out_max bytes. Traps and errors are handed back as addresses for Python to decode.

The GIL is released while guest code runs (a guest may run until its epoch deadline; the event
loop must keep going): once per call, around the input copy, the export and the output copy
together, and taken back before any Python object is made. Host functions called by the guest
take it themselves (ctypes callbacks do); copy_in, which they use, releases it around
aspen_alloc.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
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
typedef void (*error_delete_fn)(void *error);

typedef struct {
    call_unchecked_fn call_unchecked;
    set_fuel_fn set_fuel;
    get_fuel_fn get_fuel;
    set_epoch_fn set_epoch_deadline;
    memory_data_fn memory_data;
    memory_size_fn memory_size;
    error_delete_fn error_delete;
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

/* What one call did, filled in without the GIL. */
typedef struct {
    int status;          /* OK, TRAPPED or FAULT */
    void *error, *trap;  /* TRAPPED */
    int fault;           /* FAULT: which check failed */
    uint32_t ptr, n;     /* the pointer and length the fault is about */
    size_t size;         /* memory size at the fault */
    char *out;           /* OK: a malloc'd copy of the output, or NULL for none */
    uint32_t out_n;
} Outcome;

enum { BAD_ALLOC_POINTER = 1, OUTPUT_TOO_LARGE, OUTPUT_OUTSIDE, NO_HOST_MEMORY };

static void run_call(CallSite *site, const void *func, const char *in, Py_ssize_t in_n, Outcome *o) {
    val_raw vals[2] = {{0, 0}, {0, 0}};
    if (in != NULL) {
        vals[0].lo = (uint64_t)(uint32_t)in_n;
        o->error = site->call_unchecked(site->ctx, site->alloc, vals, 2, &o->trap);
        if (o->error != NULL || o->trap != NULL) {
            o->status = TRAPPED;
            return;
        }
        uint32_t ptr = (uint32_t)vals[0].lo;
        uint8_t *base = site->memory_data(site->ctx, site->mem);
        size_t size = site->memory_size(site->ctx, site->mem);
        if (ptr == 0 || base == NULL || (uint64_t)ptr + (uint64_t)in_n > size) {
            *o = (Outcome){.status = FAULT, .fault = BAD_ALLOC_POINTER, .ptr = ptr, .n = (uint32_t)in_n, .size = size};
            return;
        }
        memcpy(base + ptr, in, (size_t)in_n);
        vals[0].lo = ptr;
        vals[1].lo = (uint64_t)(uint32_t)in_n;
    }
    o->error = site->call_unchecked(site->ctx, func, vals, 2, &o->trap);
    if (o->error != NULL || o->trap != NULL) {
        o->status = TRAPPED;
        return;
    }
    uint64_t packed = vals[0].lo;
    if (packed == 0)
        return;
    uint32_t ptr = (uint32_t)(packed >> 32), n = (uint32_t)packed;
    if (n > site->out_max) {
        *o = (Outcome){.status = FAULT, .fault = OUTPUT_TOO_LARGE, .ptr = ptr, .n = n};
        return;
    }
    uint8_t *base = site->memory_data(site->ctx, site->mem);
    size_t size = site->memory_size(site->ctx, site->mem);
    if (base == NULL || (uint64_t)ptr + n > size) {
        *o = (Outcome){.status = FAULT, .fault = OUTPUT_OUTSIDE, .ptr = ptr, .n = n, .size = size};
        return;
    }
    o->out = malloc(n ? n : 1);
    if (o->out == NULL) {
        *o = (Outcome){.status = FAULT, .fault = NO_HOST_MEMORY, .n = n};
        return;
    }
    memcpy(o->out, base + ptr, n);
    o->out_n = n;
    if (site->free != NULL) {
        vals[0].lo = ptr;
        vals[1].lo = n;
        o->error = site->call_unchecked(site->ctx, site->free, vals, 2, &o->trap);
        if (o->error != NULL || o->trap != NULL) {
            free(o->out);
            o->out = NULL;
            o->status = TRAPPED;
        }
    }
}

/* call(site, func, payload | None, fuel, ticks) -> (status, value, fuel_left)
   OK: value is the output bytes or None. TRAPPED: (error, trap) addresses. FAULT: a message.
   The GIL is released once for the whole call: input copy, export and output copy (the
   payload is an immutable bytes object we hold a reference to, so reading it needs no GIL). */
static PyObject *guest_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "call(site, func, payload, fuel, ticks)");
        return NULL;
    }
    CallSite *site = site_of(args[0]);
    if (site == NULL)
        return NULL;
    void *func = PyLong_AsVoidPtr(args[1]);
    if (func == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "null function");
        return NULL;
    }
    unsigned long long fuel = PyLong_AsUnsignedLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *payload = args[2];
    if (payload != Py_None && !PyBytes_Check(payload)) {
        PyErr_SetString(PyExc_TypeError, "payload: bytes or None");
        return NULL;
    }
    void *error = site->set_fuel(site->ctx, fuel);
    if (error != NULL)
        return Py_BuildValue("(i(KK)K)", TRAPPED, (unsigned long long)(uintptr_t)error, 0ULL, 0ULL);
    site->set_epoch_deadline(site->ctx, ticks);

    Outcome o = {0};
    const char *in = payload == Py_None ? NULL : PyBytes_AS_STRING(payload);
    Py_ssize_t in_n = payload == Py_None ? 0 : PyBytes_GET_SIZE(payload);
    Py_BEGIN_ALLOW_THREADS
    run_call(site, func, in, in_n, &o);
    Py_END_ALLOW_THREADS

    uint64_t left = 0;
    void *fuel_error = site->get_fuel(site->ctx, &left);
    if (fuel_error != NULL) { /* fuel is always enabled on our engines; this only skews the stat */
        site->error_delete(fuel_error);
        left = 0;
    }
    unsigned long long fuel_left = (unsigned long long)left;
    if (o.status == TRAPPED)
        return Py_BuildValue("(i(KK)K)", TRAPPED, (unsigned long long)(uintptr_t)o.error,
                             (unsigned long long)(uintptr_t)o.trap, fuel_left);
    if (o.status == FAULT) {
        PyObject *message;
        switch (o.fault) {
        case BAD_ALLOC_POINTER:
            message = PyUnicode_FromFormat(
                "aspen_alloc(%u) returned an unusable pointer %u: guest buffer [%u, %u+%u) is outside "
                "memory of %zu bytes", o.n, o.ptr, o.ptr, o.ptr, o.n, o.size);
            break;
        case OUTPUT_TOO_LARGE:
            message = PyUnicode_FromFormat("guest returned a buffer of %u bytes, over %llu", o.n,
                                           (unsigned long long)site->out_max);
            break;
        case OUTPUT_OUTSIDE:
            message = PyUnicode_FromFormat(
                "guest returned a buffer outside its memory: guest range [%u, %u+%u) is outside "
                "memory of %zu bytes", o.ptr, o.ptr, o.n, o.size);
            break;
        default:
            return PyErr_NoMemory();
        }
        return Py_BuildValue("(iNK)", FAULT, message, fuel_left);
    }
    if (o.out == NULL)
        return Py_BuildValue("(iOK)", OK, Py_None, fuel_left);
    PyObject *out = PyBytes_FromStringAndSize(o.out, o.out_n);
    free(o.out);
    if (out == NULL)
        return NULL;
    return Py_BuildValue("(iNK)", OK, out, fuel_left);
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
