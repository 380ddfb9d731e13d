-- Argo CD health of a Treadle Workflow: from its phase, once the operator saw this generation.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Treadle operator"
  return hs
end
if obj.metadata.generation ~= nil and status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Treadle operator to see the new spec"
  return hs
end
local phase = status.phase
local message = status.message or phase
if status.progress ~= nil then
  message = message .. " (" .. status.progress .. ")"
end
hs.message = message
if phase == "Succeeded" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Invalid" or phase == "Stopped"
    or phase == "Terminated" then
  hs.status = "Degraded"
elseif phase == "Suspended" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
return hs
