-- Argo CD health of a Treadle WorkerPool: Healthy when the workers it wants are ready and up to
-- date (a pool scaled to zero is healthy), Progressing while it scales or rolls out, Degraded
-- when invalid or stalled (its Deployment cannot progress, or the name is taken).
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
local stalled = nil
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then ready = condition end
  if condition.type == "Stalled" then stalled = condition end
end
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
else
  hs.status = "Progressing"
  hs.message = (ready and ready.message) or "Waiting for the Treadle operator"
end
return hs
