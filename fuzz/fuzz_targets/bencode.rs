//! Fuzz the bounded bencode reader: parse, then walk every container that parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmwall_core::bt::bencode::{Limits, Value, parse_exact};

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse_exact(data, Limits::default()) {
        let mut stack = vec![value];
        let mut budget = 4096;
        while let Some(value) = stack.pop() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            match value {
                Value::Dict(_) => stack.extend(value.dict_entries().map(|(_, v)| v)),
                Value::List(_) => stack.extend(value.list_items()),
                Value::Int(_) | Value::Bytes(_) => {}
            }
        }
    }
});
