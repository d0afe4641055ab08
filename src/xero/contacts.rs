//! The client's contacts: looked up by a filter or by ContactNumber, and created when missing.

use reqwest::Method;

use super::wire;
use super::{ContactDraft, XeroClient, XeroError};
use crate::domain::XeroContactId;

impl XeroClient {
    pub async fn contacts_where(&self, filter: String) -> Result<Vec<wire::Contact>, XeroError> {
        let r = self
            .send(Method::GET, "Contacts", &[("where", filter)], None, None)
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::Contacts = Self::decode(&r.body)?;
        Ok(got
            .contacts
            .into_iter()
            .filter(|c| c.contact_status.as_deref() != Some("ARCHIVED"))
            .collect())
    }

    pub async fn contact_by_number(
        &self,
        number: &str,
    ) -> Result<Option<XeroContactId>, XeroError> {
        let found = self
            .contacts_where(format!("ContactNumber==\"{}\"", number.replace('"', "")))
            .await?;
        found
            .into_iter()
            .find_map(|c| c.contact_id)
            .map(|id| XeroContactId::parse(&id).map_err(|e| XeroError::Decode(e.to_string())))
            .transpose()
    }

    /// Links to an existing contact with the same number or name, or creates one (idempotently).
    pub async fn find_or_create_contact(
        &self,
        c: &ContactDraft,
    ) -> Result<(XeroContactId, bool), XeroError> {
        if let Some(n) = &c.contact_number
            && let Some(id) = self.contact_by_number(n).await?
        {
            return Ok((id, false));
        }
        let by_name = self
            .contacts_where(format!("Name==\"{}\"", c.name.replace('"', "")))
            .await?;
        if let Some(id) = by_name.into_iter().find_map(|x| x.contact_id) {
            return Ok((
                XeroContactId::parse(&id).map_err(|e| XeroError::Decode(e.to_string()))?,
                false,
            ));
        }
        let body = serde_json::to_value(wire::Contacts {
            contacts: vec![wire::Contact {
                contact_id: None,
                contact_number: c.contact_number.clone(),
                name: c.name.clone(),
                email_address: c.email.clone(),
                contact_status: None,
            }],
        })
        .map_err(|e| XeroError::Decode(e.to_string()))?;
        let key = format!(
            "rebill-contact-{}",
            c.contact_number.clone().unwrap_or_else(|| c.name.clone())
        );
        let key: String = key
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
            .take(128)
            .collect();
        let r = self
            .send(Method::PUT, "Contacts", &[], Some(&body), Some(&key))
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::Contacts = Self::decode(&r.body)?;
        let id = got
            .contacts
            .into_iter()
            .find_map(|x| x.contact_id)
            .ok_or(XeroError::Decode("no contact in the answer".into()))?;
        Ok((
            XeroContactId::parse(&id).map_err(|e| XeroError::Decode(e.to_string()))?,
            true,
        ))
    }
}
