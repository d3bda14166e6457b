/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

// The demo's shop on the Platform API, beside the legacy shops of main.go.

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// The demo's Platform shop: one SmaregiStore whose app credentials are
// these (the simulator's --client-id and secret).
const (
	platformStore    = "ginza"
	platClientID     = "demo-app"
	platClientSecret = "demo-app-secret"
)

// applyPlatformSample declares the Platform shop: the app's credentials
// Secret (clientID, clientSecret) and a SmaregiStore with api Platform whose
// API and identity bases are the second simulator.
func applyPlatformSample(ctx context.Context, kube client.Client, simAddr string) error {
	secret := &corev1.Secret{}
	secret.Namespace, secret.Name = "default", "skplatform-app"
	secret.Labels = map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}
	secret.StringData = map[string]string{smaregiv1alpha1.PlatformClientIDKey: platClientID,
		smaregiv1alpha1.PlatformClientSecretKey: platClientSecret}
	if err := kube.Create(ctx, secret); err != nil {
		return fmt.Errorf("create Secret: %w", err)
	}
	s := &smaregiv1alpha1.SmaregiStore{}
	s.Namespace, s.Name = "default", platformStore
	s.Spec.API = smaregiv1alpha1.APIPlatform
	s.Spec.ContractID = "skplatform"
	s.Spec.StoreID = "1"
	s.Spec.Endpoint = "http://" + simAddr + "/"
	s.Spec.TokenEndpoint = "http://" + simAddr + "/"
	s.Spec.CredentialsRef.Name = secret.Name
	if err := kube.Create(ctx, s); err != nil {
		return fmt.Errorf("create SmaregiStore %s: %w", platformStore, err)
	}
	return nil
}

// connectWebhooks does what the app's developer does in the developer
// console: the webhook URL and the custom header carrying the key.
func connectWebhooks(ctx context.Context, kube client.Client, s *smaregiv1alpha1.SmaregiStore, simAddr string) error {
	ref := s.Status.Receiver.WebhookKey
	if ref == nil || ref.Header == "" {
		return errors.New("status.receiver.webhookKey names no Secret and header")
	}
	secret := &corev1.Secret{}
	if err := kube.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		return fmt.Errorf("read the webhook key Secret: %w", err)
	}
	return simCall(ctx, simAddr, http.MethodPut, "/_sim/webhook-config", map[string]any{
		"url": s.Status.Receiver.URL, "headers": map[string]string{ref.Header: string(secret.Data[ref.Key])},
	}, nil)
}
