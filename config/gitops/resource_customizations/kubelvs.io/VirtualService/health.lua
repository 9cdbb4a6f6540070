-- Argo CD health of a kubelvs.io VirtualService, from the conditions the kubelvs controller
-- writes (status.observedGeneration; Accepted, ResolvedRefs, Programmed, Ready, Stalled).
--   Degraded:    not accepted (invalid, or loses an address:port to an older VirtualService),
--                a backendRef that does not resolve, a node that failed to program it (Stalled).
--   Progressing: the controller has not seen this generation yet, nodes are still programming
--                it, or no backend is ready yet.
--   Healthy:     Ready (accepted, resolved, programmed on every selected node, a ready backend).
local hs = {}
local function find(conds, t)
  for _, c in ipairs(conds) do
    if c.type == t then
      return c
    end
  end
  return nil
end
local function say(status, c, fallback)
  hs.status = status
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    hs.message = c.message
  else
    hs.message = fallback
  end
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  return say("Progressing", nil, "Waiting for the kubelvs controller")
end
local gen = obj.metadata.generation
if gen ~= nil and obj.status.observedGeneration ~= gen then
  return say("Progressing", nil, "Waiting for the kubelvs controller to observe generation " .. gen)
end
local conds = obj.status.conditions
local function current(c)
  return c ~= nil and (gen == nil or c.observedGeneration == nil or c.observedGeneration == gen)
end
local accepted = find(conds, "Accepted")
if current(accepted) and accepted.status == "False" then
  return say("Degraded", accepted, "Not accepted: " .. (accepted.reason or ""))
end
local refs = find(conds, "ResolvedRefs")
if current(refs) and refs.status == "False" then
  return say("Degraded", refs, "Backends not resolved: " .. (refs.reason or ""))
end
local stalled = find(conds, "Stalled")
if current(stalled) and stalled.status == "True" then
  return say("Degraded", stalled, "Stalled: " .. (stalled.reason or ""))
end
local ready = find(conds, "Ready")
if current(ready) and ready.status == "True" then
  return say("Healthy", ready, "Ready")
end
local programmed = find(conds, "Programmed")
if current(programmed) and programmed.status ~= "True" then
  return say("Progressing", programmed, "Programming")
end
return say("Progressing", ready, "Not ready")
