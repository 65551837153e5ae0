package config_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fabrikam/dronedelivery/shared/config"
)

func TestLoadMessaging(t *testing.T) {
	t.Parallel()
	m, err := config.LoadMessaging(envOf(map[string]string{}))
	require.NoError(t, err)
	assert.Equal(t, &config.Messaging{}, m, "nothing configured: the outbox")

	m, err = config.LoadMessaging(envOf(map[string]string{
		"SMTP_HOST": "smtp.example", "SMTP_PORT": "2525", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p",
		"SMTP_FROM": "Fabrikam Drones <drones@fabrikam.example>", "SMTP_TLS": "required",
		"ACS_ENDPOINT": "https://acs.communication.azure.com", "ACS_SMS_SENDER": "+18005550100", "ACS_CLIENT_ID": "client-1",
		"PUBLIC_BASE_URL": "https://drones.fabrikam.example/",
	}))
	require.NoError(t, err)
	assert.Equal(t, &config.SMTP{Host: "smtp.example", Port: 2525, Username: "u", Password: "p", From: "Fabrikam Drones <drones@fabrikam.example>", TLS: "required"}, m.SMTP)
	require.NotNil(t, m.ACS)
	assert.Equal(t, "+18005550100", m.ACS.SMSSender)
	assert.True(t, m.ACS.Identity.ManagedIdentity)
	assert.Equal(t, "client-1", m.ACS.Identity.ClientID)
	assert.Equal(t, "https://drones.fabrikam.example", m.PublicBaseURL)

	for name, tc := range map[string]struct {
		env  map[string]string
		want string // a setting the error names
	}{
		"SMTP without sender":    {map[string]string{"SMTP_HOST": "smtp.example"}, "SMTP_FROM"},
		"SMTP sender not mail":   {map[string]string{"SMTP_HOST": "smtp.example", "SMTP_FROM": "drones"}, "SMTP_FROM"},
		"SMTP port":              {map[string]string{"SMTP_HOST": "smtp.example", "SMTP_FROM": "a@b.example", "SMTP_PORT": "smtp"}, "SMTP_PORT"},
		"SMTP TLS mode":          {map[string]string{"SMTP_HOST": "smtp.example", "SMTP_FROM": "a@b.example", "SMTP_TLS": "maybe"}, "SMTP_TLS"},
		"SMTP password only":     {map[string]string{"SMTP_HOST": "smtp.example", "SMTP_FROM": "a@b.example", "SMTP_PASSWORD": "p"}, "SMTP_USERNAME"},
		"SMTP setting, no host":  {map[string]string{"SMTP_FROM": "a@b.example"}, "SMTP_HOST"},
		"ACS without sender":     {map[string]string{"ACS_ENDPOINT": "https://acs.communication.azure.com"}, "ACS_EMAIL_SENDER"},
		"ACS endpoint not a URL": {map[string]string{"ACS_ENDPOINT": "acs", "ACS_EMAIL_SENDER": "a@b.example"}, "ACS_ENDPOINT"},
		"ACS number":             {map[string]string{"ACS_ENDPOINT": "https://acs.communication.azure.com", "ACS_SMS_SENDER": "0800"}, "ACS_SMS_SENDER"},
		"ACS setting, no host":   {map[string]string{"ACS_EMAIL_SENDER": "a@b.example"}, "ACS_ENDPOINT"},
		"e-mail twice": {map[string]string{"SMTP_HOST": "smtp.example", "SMTP_FROM": "a@b.example",
			"ACS_ENDPOINT": "https://acs.communication.azure.com", "ACS_EMAIL_SENDER": "a@b.example"}, "ACS_EMAIL_SENDER"},
		"base URL": {map[string]string{"PUBLIC_BASE_URL": "drones.example"}, "PUBLIC_BASE_URL"},
	} {
		_, err := config.LoadMessaging(envOf(tc.env))
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), tc.want, name)
		}
	}
}
