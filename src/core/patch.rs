//! JSON patch operations, typed: every patch jobtrace sends (the admission's, the controller's
//! mark, a hold's release, the webhook configuration's `matchConditions`) is built from these,
//! with JSON pointers from unescaped tokens (annotation keys hold `/`).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

/// A JSON pointer from unescaped tokens: `/` and `~` inside a token are escaped.
pub fn pointer<'a>(tokens: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(tokens)
}

/// Fails the whole patch unless the value at `path` is `value`.
pub fn test(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
    PatchOperation::Test(TestOperation {
        path,
        value: value.into(),
    })
}

pub fn add(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path,
        value: value.into(),
    })
}

pub fn remove(path: PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path })
}

pub fn replace(path: PointerBuf, value: impl Into<Value>) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path,
        value: value.into(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn operations_serialize_as_rfc_6902_with_escaped_pointers() {
        let ops = json_patch::Patch(vec![
            test(pointer(["metadata", "uid"]), "u1"),
            add(
                pointer(["metadata", "annotations", "jobtrace.dev/exported"]),
                "true",
            ),
            remove(pointer(["metadata", "finalizers", "0"])),
            replace(pointer(["a~b"]), 1),
        ]);
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([
                { "op": "test", "path": "/metadata/uid", "value": "u1" },
                { "op": "add", "path": "/metadata/annotations/jobtrace.dev~1exported", "value": "true" },
                { "op": "remove", "path": "/metadata/finalizers/0" },
                { "op": "replace", "path": "/a~0b", "value": 1 },
            ])
        );
    }
}
