-- Argo CD health of a kubelvs.io IPVSNode (one per node, written only by that node's agent:
-- conditions IPVSAvailable, ConflictFree, Ready; one entry per VirtualService).
--   Degraded:    the kernel does not answer IPVS, a service kubelvs did not create holds a key
--                a VirtualService wants, or the last sync failed (a checkpoint error, a
--                VirtualService that failed on the node).
--   Progressing: the agent has not written its status yet or has not read the IPVS table yet.
--   Healthy:     Ready.
-- The agent's liveness is its Lease, which Argo CD does not read: a stale IPVSNode of a dead
-- agent stays as it was last written (the VirtualServices' Programmed condition does count it).
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
  return say("Progressing", nil, "Waiting for the node's kubelvs agent")
end
local conds = obj.status.conditions
local ipvs = find(conds, "IPVSAvailable")
if ipvs ~= nil and ipvs.status == "False" then
  if ipvs.reason == "Unknown" then
    return say("Progressing", ipvs, "Waiting for the agent to read the IPVS table")
  end
  return say("Degraded", ipvs, "IPVS unavailable")
end
local conflicts = find(conds, "ConflictFree")
if conflicts ~= nil and conflicts.status == "False" then
  return say("Degraded", conflicts, "Conflicts with services kubelvs did not create")
end
local ready = find(conds, "Ready")
if ready ~= nil and ready.status == "True" then
  return say("Healthy", ready, "Ready")
end
if ready ~= nil and ready.status == "False" then
  return say("Degraded", ready, "Not ready: " .. (ready.reason or ""))
end
return say("Progressing", ready, "Waiting for the node's kubelvs agent")
