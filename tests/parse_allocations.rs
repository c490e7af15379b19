//! The command parser allocates nothing: it runs for every line a user
//! sends, and its module promises that parsing only borrows from the line.
//! A counting global allocator holds it to that promise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chatgate::protocol::command::{parse, parse_login};

/// The system allocator, counting the allocations made on each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is passed on unchanged to the system allocator; the
// count is a plain thread-local cell, which allocates nothing itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn parsing_any_command_allocates_nothing() {
    let lines = [
        "hello",
        "//who",
        "/WHO",
        "/who x",
        "/RoOmS",
        "/help",
        "/Quit",
        "/me waves",
        "/ME",
        "/join den",
        "/JOIN a b",
        "/msg bob hi there",
        "/MSG bob",
        "/nope",
        "/",
        "  /who",
        "/history 20",
    ];
    for line in lines {
        assert_eq!(
            allocations_during(|| {
                std::hint::black_box(parse(line));
            }),
            0,
            "{line:?}"
        );
    }
    let logins = [
        "JOIN den bob",
        "join\tden  bob",
        "JOIN den",
        "/rooms",
        "/help me",
        "/quit",
        "GET / HTTP/1.1",
        "hello",
    ];
    for line in logins {
        assert_eq!(
            allocations_during(|| {
                std::hint::black_box(parse_login(line));
            }),
            0,
            "{line:?}"
        );
    }
    // The counter itself works: a String does allocate.
    assert!(allocations_during(|| drop(String::from("x").repeat(3))) > 0);
}
