/* The decoding bound: one walk over msgpack, without allocating, before it is decoded.

Included by sandbox/_guestcall.c (guest output and host function arguments) and wire/_msgwalk.c
(every frame on the client port, before and after authentication), so the one model below
bounds both. Needs Python.h and stdint.h/string.h included before it.
*/
#ifndef ASPEN_MSGWALK_H
#define ASPEN_MSGWALK_H

/* Decoding bound: msgpack-python allocates as it decodes (a list of n slots from an array
   header, a dict per map, an object per int), up to ~80 times the bytes (8 MiB of guest output
   peaked at 646 MiB), and its max_*_len limits bound one container, not their number. So guest
   msgpack is walked first, without allocating: it must be one complete value without ext
   types, nest at most depth_max deep, and cost at most min(factor * its bytes + slack, cap)
   by the model below, an upper bound of what CPython 3.11 allocates for each object
   (tests/sandbox/test_decoding.py measures it against tracemalloc). */
typedef struct {
    uint64_t depth_max, factor, slack, cap;
} Bound;

enum { DEPTH_LIMIT = 64 }; /* the most depth_max may be */
enum { WALK_OK = 0, WALK_MALFORMED, WALK_EXT, WALK_TOO_DEEP, WALK_TOO_BIG };

/* Model (bytes): small ints (0..255), nil and bools are shared objects; other ints 40 (56 for
   64-bit ones) and floats 40 (the objects are 24 to 36 bytes; decoding an array of them was
   measured at about 40 per item beyond its slot); a str 64 + its bytes if ASCII, else 64 + 5
   per byte (4-byte characters, and the decoder's first, narrower buffer); a bin 48 + its
   bytes; a list 64 + 8 per slot; an empty dict 80, others 224 + 48 per entry up to 5 entries
   (its first table holds 5) and 96 per entry beyond (the table grows by doubling, old and new
   alive while it does, and string keys are interned). */
static uint64_t be_uint(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t walk_budget(const Bound *b, size_t n) {
    uint64_t budget = b->factor * (uint64_t)n + b->slack;
    return budget < b->cap ? budget : b->cap;
}

static int walk_msgpack(const uint8_t *p, size_t n, const Bound *b, size_t *at_out) {
    uint64_t budget = walk_budget(b, n);
    uint64_t depth_max = b->depth_max < DEPTH_LIMIT ? b->depth_max : DEPTH_LIMIT;
    uint64_t left[DEPTH_LIMIT + 1]; /* items still to read at each level */
    int depth = 0, status = WALK_OK;
    uint64_t cost = 0;
    size_t at = 0;
    left[0] = 1;
    for (;;) {
        while (depth >= 0 && left[depth] == 0)
            depth--;
        if (depth < 0)
            break;
        left[depth]--;
        if (at >= n) {
            status = WALK_MALFORMED;
            break;
        }
        uint8_t h = p[at++];
        uint64_t len = 0, count = 0; /* bytes of a str or bin; items of an array or map */
        int size = 0, is_str = 0, is_bin = 0, is_array = 0, is_map = 0;
        if (h <= 0x7f || h == 0xc0 || h == 0xc2 || h == 0xc3) {
        } else if (h >= 0xe0) {
            cost += 40;
        } else if (h <= 0x8f) {
            is_map = 1, count = h & 0x0f;
        } else if (h <= 0x9f) {
            is_array = 1, count = h & 0x0f;
        } else if (h <= 0xbf) {
            is_str = 1, len = h & 0x1f;
        } else {
            switch (h) {
            case 0xc4: case 0xc5: case 0xc6: is_bin = 1, size = 1 << (h - 0xc4); break;
            case 0xd9: case 0xda: case 0xdb: is_str = 1, size = 1 << (h - 0xd9); break;
            case 0xdc: case 0xdd: is_array = 1, size = h == 0xdc ? 2 : 4; break;
            case 0xde: case 0xdf: is_map = 1, size = h == 0xde ? 2 : 4; break;
            case 0xcc: at += 1; break;
            case 0xca: case 0xcd: case 0xce: case 0xd0: case 0xd1: case 0xd2:
                at += h == 0xca || h == 0xce || h == 0xd2 ? 4 : h == 0xcd || h == 0xd1 ? 2 : 1;
                cost += 40;
                break;
            case 0xcb: case 0xcf: case 0xd3: at += 8, cost += h == 0xcb ? 40 : 56; break;
            case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
                status = WALK_EXT;
                break;
            default: /* 0xc1, never used */
                status = WALK_MALFORMED;
            }
            if (status != WALK_OK)
                break;
            if (size) {
                if (at + (size_t)size > n) {
                    status = WALK_MALFORMED;
                    break;
                }
                if (is_str || is_bin)
                    len = be_uint(p + at, size);
                else
                    count = be_uint(p + at, size);
                at += (size_t)size;
            }
        }
        if (at > n) {
            status = WALK_MALFORMED;
            break;
        }
        if (is_str || is_bin) {
            if (len > n - at) {
                status = WALK_MALFORMED;
                break;
            }
            uint8_t high = 0;
            if (is_str)
                for (uint64_t i = 0; i < len; i++)
                    high |= p[at + i];
            cost += is_bin ? 48 + len : high & 0x80 ? 64 + 5 * len : 64 + len;
            at += (size_t)len;
        } else if (is_array || is_map) {
            uint64_t items = is_map ? 2 * count : count;
            if (items > n - at) { /* each item takes a byte at least: a claim the bytes cannot hold */
                status = WALK_MALFORMED;
                break;
            }
            cost += is_array ? 64 + 8 * count : count == 0 ? 80 : 224 + (count <= 5 ? 48 : 96) * count;
            if (items > 0) {
                if ((uint64_t)depth + 1 > depth_max) {
                    status = WALK_TOO_DEEP;
                    break;
                }
                left[++depth] = items;
            }
        }
        if (cost > budget) {
            status = WALK_TOO_BIG;
            break;
        }
    }
    if (status == WALK_OK && at != n)
        status = WALK_MALFORMED; /* bytes after the value */
    *at_out = at;
    return status;
}

/* Why a walk failed, as a new str (None for WALK_OK). */
static PyObject *walk_message(int status, const Bound *b, size_t n, size_t at) {
    switch (status) {
    case WALK_OK:
        Py_RETURN_NONE;
    case WALK_EXT:
        return PyUnicode_FromFormat("msgpack holds an ext type (at byte %zu), which the ABI does not use", at - 1);
    case WALK_TOO_DEEP:
        return PyUnicode_FromFormat("msgpack nests deeper than %llu (at byte %zu)", (unsigned long long)b->depth_max,
                                    at);
    case WALK_TOO_BIG:
        return PyUnicode_FromFormat(
            "msgpack of %zu bytes would decode to over %llu bytes (the bound: %llu per byte + %llu, at most %llu)", n,
            (unsigned long long)walk_budget(b, n), (unsigned long long)b->factor, (unsigned long long)b->slack,
            (unsigned long long)b->cap);
    default:
        return PyUnicode_FromFormat("not one complete msgpack value (at byte %zu of %zu)", at, n);
    }
}

/* decode_bound(data, depth_max, factor, slack, cap) -> None, or why `data` may not be decoded
   (see Bound): for msgpack a guest hands a host function. */
static PyObject *decode_bound(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "decode_bound(data: bytes, depth_max, factor, slack, cap)");
        return NULL;
    }
    Bound b;
    uint64_t *fields[4] = {&b.depth_max, &b.factor, &b.slack, &b.cap};
    for (int i = 0; i < 4; i++) {
        *fields[i] = PyLong_AsUnsignedLongLong(args[i + 1]);
        if (PyErr_Occurred())
            return NULL;
    }
    size_t n = (size_t)PyBytes_GET_SIZE(args[0]), at;
    int walked = walk_msgpack((const uint8_t *)PyBytes_AS_STRING(args[0]), n, &b, &at);
    return walk_message(walked, &b, n, at);
}

#endif /* ASPEN_MSGWALK_H */
