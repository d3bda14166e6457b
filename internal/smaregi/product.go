package smaregi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// productScanThreshold is the number of keys above which a lookup reads the
// whole product table (1,000 products per call) instead of one call per key.
const productScanThreshold = 50

type productWire struct {
	ProductID   Flex `json:"productId"`
	ProductCode Flex `json:"productCode"`
}

// ProductIDsByCode maps product codes (商品コード, often the JAN) to Smaregi
// product IDs with product_ref. Codes Smaregi does not know are absent from
// the map. product_ref must be switched on for the contract; if it is not,
// the error has code 23 (IsConfigError).
func (c *Client) ProductIDsByCode(ctx context.Context, codes []string) (map[string]string, error) {
	return c.productLookup(ctx, "productCode", "productId", codes)
}

// ProductCodesByID is the reverse of ProductIDsByCode.
func (c *Client) ProductCodesByID(ctx context.Context, ids []string) (map[string]string, error) {
	for _, id := range ids {
		if err := ValidateID("product", id, 15); err != nil {
			return nil, err
		}
	}
	return c.productLookup(ctx, "productId", "productCode", ids)
}

// productLookup maps keys of column from to values of column to. A few keys
// are looked up one call each (exact match, one condition object); many are
// resolved by scanning the product table, which costs one call per 1,000
// products whatever the number of keys.
func (c *Client) productLookup(ctx context.Context, from, to string, keys []string) (map[string]string, error) {
	want := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("smaregi product_ref: empty %s", from)
		}
		want[k] = struct{}{}
	}
	out := make(map[string]string, len(want))
	if len(want) == 0 {
		return out, nil
	}
	pick := func(w *productWire) (string, string) {
		if from == "productCode" {
			return string(w.ProductCode), string(w.ProductID)
		}
		return string(w.ProductID), string(w.ProductCode)
	}
	var buf bytes.Buffer
	params := refParams{TableName: "Product", Fields: []string{"productId", "productCode"}}
	if len(want) <= productScanThreshold {
		params.Limit, params.Page = 1, 1
		for k := range want {
			params.Conditions = []map[string]string{{from: k}}
			body, err := json.Marshal(&params)
			if err != nil {
				return nil, fmt.Errorf("smaregi product_ref: encode params: %w", err)
			}
			var env refEnvelope[productWire]
			if err := c.call(ctx, ProcProductRef, body, &buf, func(b []byte) error { return json.Unmarshal(b, &env) }); err != nil {
				return nil, fmt.Errorf("look up product by %s: %w", from, err)
			}
			for i := range env.Result {
				if key, val := pick(&env.Result[i]); key == k && val != "" {
					out[k] = val
				}
			}
		}
		return out, nil
	}
	// Products rarely change during a scan; productId order keeps pages
	// stable because new products get higher IDs.
	params.Limit = c.pageSize
	params.Order = []string{"productId asc"}
	var wire []productWire
	for page := 1; ; page++ {
		params.Page = page
		body, err := json.Marshal(&params)
		if err != nil {
			return nil, fmt.Errorf("smaregi product_ref: encode params: %w", err)
		}
		clear(wire[:cap(wire)])
		env := refEnvelope[productWire]{Result: wire[:0]}
		if err := c.call(ctx, ProcProductRef, body, &buf, func(b []byte) error { return json.Unmarshal(b, &env) }); err != nil {
			return nil, fmt.Errorf("scan products (page %d): %w", page, err)
		}
		wire = env.Result
		for i := range wire {
			key, val := pick(&wire[i])
			if _, ok := want[key]; ok && val != "" {
				out[key] = val
			}
		}
		if len(wire) < c.pageSize || len(out) == len(want) {
			return out, nil
		}
	}
}
