//! The Autotask choices chain as the guide's do (issue 11): a contract, then the products that can
//! go on it, then the product's material code first.

use rebill::autotask::AutotaskError;
use rebill::domain::{ContractId, ProductId};
use serde_json::json;

use crate::common::TestApp;
use crate::common::world::build;

async fn products_for_a_contract_and_material_codes_for_a_product_are_chained(app: TestApp) {
    let w = build(&app).await;
    let at = w.pipeline.autotask.as_ref().unwrap();
    let company = 174;
    // A Block Hours contract (type 4) takes no charges; a second product with its own material
    // code; a general billing code (use type 2), not a material code; an inactive product.
    w.sandboxes.autotask.insert(
        "contracts",
        json!({"id": 17499, "companyID": company, "contractName": "Block of hours", "status": 1,
               "contractType": 4, "startDate": "2020-01-01T00:00:00Z", "endDate": "2030-12-31T00:00:00Z"}),
    );
    w.sandboxes.autotask.insert(
        "billingcodes",
        json!({"id": 17498, "name": "General", "isActive": true, "useType": 2}),
    );
    let use_type = at.material_code_use_type().await.unwrap();
    w.sandboxes.autotask.insert(
        "billingcodes",
        json!({"id": 17497, "name": "Data Material", "isActive": true, "useType": use_type}),
    );
    w.sandboxes.autotask.insert(
        "products",
        json!({"id": 17496, "name": "Hosted Data", "isActive": true, "productBillingCodeID": 17497}),
    );
    w.sandboxes.autotask.insert(
        "products",
        json!({"id": 17495, "name": "Retired", "isActive": false}),
    );

    let products = at
        .products_for_contract(w.coding.contract_id)
        .await
        .unwrap();
    let ids: Vec<i64> = products.iter().map(|p| p.id).collect();
    assert!(ids.contains(&w.coding.product_id.get()), "{products:?}");
    assert!(ids.contains(&17496), "{products:?}");
    assert!(
        !ids.contains(&17495),
        "an inactive product is not offered: {products:?}"
    );

    let refused = at
        .products_for_contract(ContractId::new(17499).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, AutotaskError::InvalidCoding(m) if m.contains("Block Hours")),
        "{refused:?}"
    );

    let codes = at
        .material_codes_for_product(ProductId::new(17496).unwrap())
        .await
        .unwrap();
    assert_eq!(
        codes[0].id, 17497,
        "the product's own code first: {codes:?}"
    );
    assert!(
        codes
            .iter()
            .any(|c| c.id == w.coding.material_code_id.get()),
        "{codes:?}"
    );
    assert!(
        !codes.iter().any(|c| c.id == 17498),
        "only Material Cost Codes: {codes:?}"
    );
    let inactive = at
        .material_codes_for_product(ProductId::new(17495).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(inactive, AutotaskError::InvalidCoding(_)),
        "{inactive:?}"
    );
}

crate::backend_tests!(products_for_a_contract_and_material_codes_for_a_product_are_chained);
