"""What ImageX leaves out of a DICOM file's catalog header unless the site keeps patient data: the
identifying attributes of the DICOM Basic Application Level Confidentiality Profile (PS3.15 Annex E,
Table E.1-1), and the real instance UIDs, which are replaced by pseudonyms.

The README's "DICOM patient data" section cites `PATIENT_ATTRIBUTES`.
"""

from __future__ import annotations

import hashlib
import hmac

# The attributes of PS3.15 Annex E, Table E.1-1 that name or describe the patient, the people who cared
# for them, the institution and the devices (action X, Z, D or U in the Basic Profile; UIDs are handled
# apart, below). Kept as the profile's options allow: dates and times (Retain Longitudinal Temporal
# Information with Full Dates), study and series descriptions, and acquisition parameters, which the
# catalog is for. Patient characteristics (sex, age, size, weight) go too: Annex E keeps them only under
# its Retain Patient Characteristics option. A sequence named here goes whole.
PATIENT_ATTRIBUTES: tuple[str, ...] = (
    # the patient
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientSex",
    "PatientSexNeutered", "PatientAge", "PatientSize", "PatientWeight", "PatientAddress",
    "PatientTelephoneNumbers", "PatientTelecomInformation", "PatientComments", "PatientState",
    "PatientReligiousPreference", "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence",
    "PatientPrimaryLanguageModifierCodeSequence", "PatientInstitutionResidence",
    "PatientTransportArrangements",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "ReferencedPatientSequence",
    "ReferencedPatientAliasSequence", "ReferencedPatientPhotoSequence", "ResponsiblePerson",
    "ResponsiblePersonRole", "ResponsibleOrganization", "MedicalRecordLocator", "EthnicGroup", "Occupation",
    "MilitaryRank", "BranchOfService", "CountryOfResidence", "RegionOfResidence", "MedicalAlerts",
    "Allergies", "SmokingStatus", "PregnancyStatus", "LastMenstrualDate", "AdditionalPatientHistory",
    "SpecialNeeds", "PreMedication", "InsurancePlanIdentification",
    "ConfidentialityConstraintOnPatientDataDescription",
    # the visit and the request
    "AdmissionID", "IssuerOfAdmissionID", "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence",
    "DischargeDiagnosisDescription", "CurrentPatientLocation", "ScheduledPatientInstitutionResidence",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "IssuerOfServiceEpisodeID", "VisitComments",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyID", "StudyIDIssuer", "RequestedProcedureID",
    "RequestedProcedureComments", "RequestedProcedureLocation", "RequestAttributesSequence",
    "ReasonForStudy", "ReasonForTheImagingServiceRequest", "ReasonForRequestedProcedureCodeSequence",
    "ImagingServiceRequestComments", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "OrderEnteredBy", "OrderEntererLocation",
    "OrderCallbackPhoneNumber", "RequestingPhysician", "RequestingPhysicianIdentificationSequence",
    "RequestingService", "RequestedContrastAgent", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "PerformedLocation", "ScheduledProcedureStepLocation",
    "ScheduledStudyLocation", "ScheduledStudyLocationAETitle", "StudyComments",
    # the people
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence",
    "NameOfPhysiciansReadingStudy", "PhysiciansReadingStudyIdentificationSequence", "OperatorsName",
    "OperatorIdentificationSequence", "ScheduledPerformingPhysicianName",
    "ScheduledPerformingPhysicianIdentificationSequence", "ScheduledHumanPerformersSequence",
    "ActualHumanPerformersSequence", "HumanPerformerName", "HumanPerformerOrganization", "PersonName",
    "PersonAddress", "PersonTelephoneNumbers", "PersonIdentificationCodeSequence", "ReviewerName",
    "VerifyingObserverName", "VerifyingObserverSequence", "VerifyingObserverIdentificationCodeSequence",
    "VerifyingOrganization", "AuthorObserverSequence", "ParticipantSequence", "ContentCreatorName",
    "ContentCreatorIdentificationCodeSequence", "InterpretationAuthor", "InterpretationRecorder",
    "InterpretationTranscriber", "InterpretationApproverSequence", "PhysicianApprovingInterpretation",
    "NamesOfIntendedRecipientsOfResults", "IntendedRecipientsOfResultsIdentificationSequence",
    "DistributionName", "DistributionAddress", "ResultsDistributionListSequence",
    # the institution, the place and the devices
    "InstitutionName", "InstitutionAddress", "InstitutionCodeSequence", "InstitutionalDepartmentName",
    "InstitutionalDepartmentTypeCodeSequence", "CustodialOrganizationSequence", "StationName",
    "StationAETitle", "SourceApplicationEntityTitle", "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle", "PerformedStationAETitle", "PerformedStationName",
    "PerformedStationNameCodeSequence", "PerformedStationGeographicLocationCodeSequence",
    "ScheduledStationAETitle", "ScheduledStationName", "ScheduledStationNameCodeSequence",
    "ScheduledStationGeographicLocationCodeSequence", "DeviceSerialNumber", "DeviceID", "DetectorID",
    "GantryID", "GeneratorID", "CassetteID", "PlateID", "ModifyingDeviceID", "ModifyingDeviceManufacturer",
    # free text and content that may carry any of the above
    "ImageComments", "FrameComments", "AcquisitionComments", "DerivationDescription", "IdentifyingComments",
    "ImagePresentationComments", "InterpretationText", "InterpretationDiagnosisDescription", "Impressions",
    "ResultsComments", "TextComments", "TextString", "OverlayComments", "OverlayData", "CurveData",
    "GraphicAnnotationSequence", "IconImageSequence", "TopicAuthor", "TopicKeywords", "TopicSubject",
    "TopicTitle", "ContributionDescription", "ContentSequence", "OriginalAttributesSequence",
    "ModifiedAttributesSequence", "DigitalSignaturesSequence", "DataSetTrailingPadding",
)
_REMOVED = frozenset(PATIENT_ATTRIBUTES)
# value representations that hold people's names wherever they occur, private or not in the list above
_NAME_VRS = frozenset({"PN"})
# UIDs the standard itself defines (SOP classes, transfer syntaxes, coding schemes): they identify nobody
_STANDARD_UID_ROOT = "1.2.840.10008."


def is_patient_data(keyword: str, vr: str) -> bool:
    """Is an element with this keyword and value representation identifying (removed unless kept)?"""
    return keyword in _REMOVED or vr in _NAME_VRS


def pseudonym(uid: str, key: bytes) -> str:
    """A UID that stands for `uid` in this archive: the same for the same UID and key (so a series still
    groups across its files), and from which the real UID cannot be recovered without the key. DICOM's
    "2.25." root takes a decimal 128-bit number, as UUID-derived UIDs do (PS3.5 B.2)."""
    digest = hmac.new(key, uid.strip().encode("ascii", "replace"), hashlib.sha256).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def is_instance_uid(uid: str) -> bool:
    """A UID made for some study, series, instance, device or organisation (not one the standard defines)."""
    return bool(uid) and not uid.startswith(_STANDARD_UID_ROOT)
