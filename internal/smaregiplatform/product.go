package smaregiplatform

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// productScanThreshold is the number of codes above which a lookup reads
// the whole product list (1,000 products a call) instead of one call a code.
const productScanThreshold = 50

type productWire struct {
	ProductID   string `json:"productId"`
	ProductCode string `json:"productCode"`
}

// ProductIDsByCode maps product codes (商品コード, often the JAN) to product
// IDs with GET products (scope pos.products:read). Codes Smaregi does not
// know are absent from the map.
func (c *Client) ProductIDsByCode(ctx context.Context, codes []string) (map[string]string, error) {
	want := make(map[string]struct{}, len(codes))
	for _, k := range codes {
		if k == "" {
			return nil, errors.New("smaregi platform: empty product code")
		}
		want[k] = struct{}{}
	}
	out := make(map[string]string, len(want))
	if len(want) == 0 {
		return out, nil
	}
	collect := func(page []productWire) error {
		for i := range page {
			if _, ok := want[page[i].ProductCode]; ok && page[i].ProductID != "" {
				out[page[i].ProductCode] = page[i].ProductID
			}
		}
		return nil
	}
	key := func(w *productWire) string { return w.ProductID }
	if len(want) <= productScanThreshold {
		for code := range want {
			if err := listPages(ctx, c, CallProductList, url.Values{"product_code": {code}}, key, collect); err != nil {
				return nil, fmt.Errorf("look up product by code: %w", err)
			}
		}
		return out, nil
	}
	if err := listPages(ctx, c, CallProductList, url.Values{}, key, collect); err != nil {
		return nil, fmt.Errorf("scan products: %w", err)
	}
	return out, nil
}
