//! A typed query filter: `Filter::eq("companyID", 174).and(Filter::eq("status", 1))` becomes the
//! `{"filter": [...]}` body of `POST /V1.0/{Entity}/query`.

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Cmp {
        op: &'static str,
        field: String,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    Group {
        op: &'static str,
        items: Vec<Filter>,
    },
}

impl Filter {
    fn cmp(op: &'static str, field: &str, value: impl Into<Value>) -> Self {
        Filter::Cmp {
            op,
            field: field.into(),
            value: value.into(),
        }
    }
    pub fn eq(field: &str, value: impl Into<Value>) -> Self {
        Self::cmp("eq", field, value)
    }
    pub fn gt(field: &str, value: impl Into<Value>) -> Self {
        Self::cmp("gt", field, value)
    }
    pub fn gte(field: &str, value: impl Into<Value>) -> Self {
        Self::cmp("gte", field, value)
    }
    pub fn lte(field: &str, value: impl Into<Value>) -> Self {
        Self::cmp("lte", field, value)
    }
    pub fn begins_with(field: &str, value: &str) -> Self {
        Self::cmp("beginsWith", field, value)
    }
    pub fn is_in(field: &str, values: impl IntoIterator<Item = impl Into<Value>>) -> Self {
        Filter::In {
            field: field.into(),
            values: values.into_iter().map(Into::into).collect(),
        }
    }
    pub fn and(self, other: Filter) -> Self {
        match self {
            Filter::Group {
                op: "and",
                mut items,
            } => {
                items.push(other);
                Filter::Group { op: "and", items }
            }
            first => Filter::Group {
                op: "and",
                items: vec![first, other],
            },
        }
    }
    pub fn or(self, other: Filter) -> Self {
        match self {
            Filter::Group {
                op: "or",
                mut items,
            } => {
                items.push(other);
                Filter::Group { op: "or", items }
            }
            first => Filter::Group {
                op: "or",
                items: vec![first, other],
            },
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Filter::Cmp { op, field, value } => json!({"op": op, "field": field, "value": value}),
            Filter::In { field, values } => json!({"op": "in", "field": field, "value": values}),
            Filter::Group { op, items } => {
                json!({"op": op, "items": items.iter().map(Filter::to_json).collect::<Vec<_>>()})
            }
        }
    }

    /// The request body.
    pub fn body(&self) -> Value {
        json!({ "filter": [self.to_json()] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_autotask_filter_json() {
        let f = Filter::eq("companyID", 174)
            .and(Filter::eq("status", 1))
            .and(Filter::gt("id", 0));
        assert_eq!(
            f.body(),
            json!({"filter": [{"op": "and", "items": [
                {"op": "eq", "field": "companyID", "value": 174},
                {"op": "eq", "field": "status", "value": 1},
                {"op": "gt", "field": "id", "value": 0}
            ]}]})
        );
        let g = Filter::is_in("id", [1, 2]).or(Filter::begins_with("name", "SIP"));
        assert_eq!(
            g.to_json()["items"][0],
            json!({"op": "in", "field": "id", "value": [1, 2]})
        );
    }
}
