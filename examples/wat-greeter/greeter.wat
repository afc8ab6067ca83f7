;; greeter: the smallest useful Aspen plugin, in WebAssembly text.
;; Handles the request type "Greet" and answers
;;   {"type": "Greeting", "text": "hello from a WASM plugin", "node": <the serving node's id>}
;; It imports one host function (get_node_id, no permission needed) and exports what the
;; guest ABI asks for (docs/HOST_ABI.md): memory, aspen_alloc, plugin_info, handle_request.
(module
  (import "aspen" "get_node_id" (func $get_node_id (result i64)))
  (memory (export "memory") 2)
  ;; A bump allocator that wraps inside the second page: the host copies one request in and
  ;; reads one answer out per call, and calls into one instance never overlap.
  (global $bump (mut i32) (i32.const 65536))
  (func $alloc (export "aspen_alloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $bump) (local.get $n)) (i32.const 131072))
      (then (global.set $bump (i32.const 65536))))
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  ;; plugin_info: msgpack {"name": "greeter", "version": "1.0.0"}
  (data (i32.const 512) "\82\a4\6e\61\6d\65\a7\67\72\65\65\74\65\72\a7\76\65\72\73\69\6f\6e\a5\31\2e\30\2e\30")
  (func (export "plugin_info") (result i64) (i64.const 2199023255580))
  ;; the response, all but its last byte (the node id, a msgpack positive fixint)
  (data (i32.const 1024) "\83\a4\74\79\70\65\a8\47\72\65\65\74\69\6e\67\a4\74\65\78\74\b8\68\65\6c\6c\6f\20\66\72\6f\6d\20\61\20\57\41\53\4d\20\70\6c\75\67\69\6e\a4\6e\6f\64\65")
  (func (export "handle_request") (param $p i32) (param $n i32) (result i64)
    (local $out i32)
    (local.set $out (call $alloc (i32.const 51)))
    (memory.copy (local.get $out) (i32.const 1024) (i32.const 50))
    (i32.store8 (i32.add (local.get $out) (i32.const 50))
                (i32.and (i32.wrap_i64 (call $get_node_id)) (i32.const 127)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32)) (i64.const 51))))
