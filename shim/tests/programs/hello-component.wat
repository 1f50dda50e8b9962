;; A WASI preview 2 command component written by hand, so no p2 toolchain is needed: it gets
;; stdout from wasi:cli/stdout, prints a line with blocking-write-and-flush and returns from
;; wasi:cli/run. Used by shim/tests/shim.rs and tests/e2e/wasm.rs.
(component
  (import "wasi:io/error@0.2.0" (instance $io-error
    (export "error" (type (sub resource)))))
  (alias export $io-error "error" (type $error))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer 1 $error (type $error-outer))
    (export "error" (type $error-local (eq $error-outer)))
    (export "output-stream" (type $output-stream (sub resource)))
    (type $stream-error-def (variant
      (case "last-operation-failed" (own $error-local))
      (case "closed")))
    (export "stream-error" (type $stream-error (eq $stream-error-def)))
    (export "[method]output-stream.blocking-write-and-flush"
      (func (param "self" (borrow $output-stream)) (param "contents" (list u8))
            (result (result (error $stream-error)))))))
  (alias export $streams "output-stream" (type $output-stream))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout
    (alias outer 1 $output-stream (type $output-stream-outer))
    (export "output-stream" (type $os (eq $output-stream-outer)))
    (export "get-stdout" (func (result (own $os))))))
  (core module $memory (memory (export "memory") 1))
  (core instance $memory (instantiate $memory))
  (alias core export $memory "memory" (core memory $mem))
  (core func $get-stdout (canon lower (func $stdout "get-stdout")))
  (core func $write (canon lower
    (func $streams "[method]output-stream.blocking-write-and-flush") (memory $mem)))
  (core func $drop (canon resource.drop $output-stream))
  (core instance $host
    (export "get-stdout" (func $get-stdout))
    (export "write" (func $write))
    (export "drop" (func $drop)))
  (core module $main
    (import "host" "get-stdout" (func $get-stdout (result i32)))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (import "host" "drop" (func $drop (param i32)))
    (import "env" "memory" (memory 1))
    (data (i32.const 16) "hello from a component\n")
    (func (export "run") (result i32)
      (local $stream i32)
      (local.set $stream (call $get-stdout))
      (call $write (local.get $stream) (i32.const 16) (i32.const 23) (i32.const 64))
      (call $drop (local.get $stream))
      (i32.const 0) ;; the result: 0 is ok, anything else err
      ))
  (core instance $main (instantiate $main
    (with "host" (instance $host))
    (with "env" (instance $memory))))
  (func $run (result (result)) (canon lift (core func $main "run")))
  (instance $run (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run)))
