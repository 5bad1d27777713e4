//! YAML in and out for the cluster configs and manifests.
//!
//! Writing: `serde-saphyr`'s serializer (maintained; already in the tree through
//! kube-client's kubeconfig reader). It keeps the serializer's field order
//! (`apiVersion`, `kind`, `metadata` first, as k8s-openapi writes them) and quotes
//! every string a YAML 1.1 reader would take for something else (`on`, `yes`,
//! `1:20`, `6443`), which matters because k3d, ctlptl and Helm read with go-yaml.
//! `serde_yaml` is archived; `saphyr`'s own emitter has no serde.
//!
//! Reading (tests and checks): `saphyr` with YAML 1.2 core resolution into
//! `serde_json::Value`, the shape the JSON Schemas and our checks look at.

use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("cannot write YAML: {0}")]
    Write(String),
    #[error("{path}: not YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
}

/// One YAML document for `value` (no `---` header).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, YamlError> {
    serde_saphyr::to_string(value).map_err(|e| YamlError::Write(e.to_string()))
}

/// Every document of `text` as JSON values; `path` names the file in errors.
pub fn to_json(path: &str, text: &str) -> Result<Vec<Value>, YamlError> {
    let docs = Yaml::load_from_str(text).map_err(|e| YamlError::Syntax {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    docs.iter()
        .map(|doc| json_of(doc, "").map_err(|message| shape(path, message)))
        .collect()
}

fn shape(path: &str, message: String) -> YamlError {
    YamlError::Shape {
        path: path.to_string(),
        message,
    }
}

fn json_of(node: &Yaml<'_>, at: &str) -> Result<Value, String> {
    let field = if at.is_empty() { "(document)" } else { at };
    Ok(match node {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Value::from(*i),
        Yaml::Value(Scalar::FloatingPoint(f)) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| format!("{field}: a float JSON cannot hold"))?,
        Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| json_of(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Yaml::Value(Scalar::String(s)) => s.to_string(),
                    Yaml::Value(Scalar::Integer(i)) => i.to_string(),
                    Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
                    _ => return Err(format!("{field}: a key that is not a scalar")),
                };
                let child = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                if out.insert(key, json_of(v, &child)?).is_some() {
                    return Err(format!("{child}: duplicate key"));
                }
            }
            Value::Object(out)
        }
        Yaml::Tagged(_, inner) => json_of(inner, at)?,
        Yaml::Alias(_) => return Err(format!("{field}: aliases are not used here")),
        Yaml::Representation(..) | Yaml::BadValue => {
            return Err(format!("{field}: a value that does not resolve"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_a_yaml_1_1_reader_would_misread_come_back_as_strings() {
        let v = json!({
            "apiVersion": "v1",
            "words": ["on", "off", "yes", "no", "y", "true", "null", "~", "1:20", "6443", "0x1f",
                      "2026-12-01", "8080:80", "-x", "a: b", "# c", "", " lead", "multi\nline"],
            "n": 6443, "b": false, "nothing": null, "f": 1.5
        });
        let text = to_yaml(&v).unwrap();
        let back = to_json("t.yaml", &text).unwrap();
        assert_eq!(back, vec![v], "{text}");
        // A YAML 1.1 reader: every ambiguous word above must be quoted.
        for word in ["on", "off", "yes", "no", "y", "1:20", "2026-12-01"] {
            assert!(
                text.contains(&format!("\"{word}\"")) || text.contains(&format!("'{word}'")),
                "{word} unquoted in\n{text}"
            );
        }
    }

    #[test]
    fn keys_keep_the_serializers_order() {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc {
            api_version: &'static str,
            kind: &'static str,
            a: u8,
        }
        let text = to_yaml(&Doc {
            api_version: "v1",
            kind: "K",
            a: 1,
        })
        .unwrap();
        assert!(text.starts_with("apiVersion: v1\nkind: K\n"), "{text}");
    }

    #[test]
    fn bad_yaml_names_the_file() {
        let e = to_json("x.yaml", "a: [1,\n").unwrap_err().to_string();
        assert!(e.starts_with("x.yaml: not YAML:"), "{e}");
        let e = to_json("x.yaml", "a: 1\na: 2\n").unwrap_err().to_string();
        assert!(e.contains("duplicated key"), "{e}");
    }
}
