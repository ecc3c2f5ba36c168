-- Orthanc auto-routing to a medm2g DICOM node (`medm2g dicom-node`).
-- Every MR series, once stable (no new instance for StableAge seconds), is sent to the modality
-- "medm2g" of orthanc.json. What medm2g sends back carries SyntheticData (0008,001C) = YES and is
-- never routed again, even for MR -> MR tasks (Orthanc 1.10's dictionary does not name that tag,
-- hence the numeric key).
function OnStableSeries(seriesId, tags, metadata)
  local shared = ParseJson(RestApiGet('/series/' .. seriesId .. '/shared-tags'))
  local synthetic = shared['0008,001c'] ~= nil and shared['0008,001c']['Value'] == 'YES'
  if tags['Modality'] == 'MR' and not synthetic then
    RestApiPost('/modalities/medm2g/store',
                '{"Resources": ["' .. seriesId .. '"], "Asynchronous": true}')
  end
end
