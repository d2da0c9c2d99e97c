package api

func (h *Handler) getAdmin(c *call) error {
	a, err := h.ids.GetAdmin(c.id)
	if err != nil {
		return err
	}
	return c.ok(adminJSON(a, nil))
}

// updateAdmin enables or disables the admin user. Enabling it for the first
// time generates its passwords, whose values are in this answer only.
func (h *Handler) updateAdmin(c *call) error {
	var req AdminPatch
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.AdminUserEnabled == nil {
		return badRequest("adminUserEnabled is required: send {\"adminUserEnabled\": true} or false")
	}
	a, creds, err := h.ids.SetAdminEnabled(c.ctx(), c.id, *req.AdminUserEnabled)
	if err != nil {
		return err
	}
	return c.ok(adminJSON(a, creds))
}

func (h *Handler) regenerateAdminCredential(c *call) error {
	var req RegenerateCredentialRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	creds, err := h.ids.RenewAdminPassword(c.ctx(), c.id, req.Name)
	if err != nil {
		return err
	}
	return c.ok(credentialsJSON(creds))
}
