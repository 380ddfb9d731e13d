-- Argo CD health of a Treadle SyncJob: Healthy while it schedules normally (a skipped or failed
-- run is not ill health), Degraded after maxConsecutiveFailures or when invalid.
local hs = {}
local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Treadle operator"
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Treadle operator to see the new spec"
  return hs
end
local ready = nil
local degraded = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Degraded" then degraded = condition end
end
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message
elseif ready ~= nil and ready.status == "False" and ready.reason == "Invalid" then
  hs.status = "Degraded"
  hs.message = ready.message
elseif obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "last run: " .. (status.lastOutcome or "none yet")
else
  hs.status = "Progressing"
  hs.message = (ready and ready.message) or "Waiting for the Treadle operator"
end
return hs
